/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/sandbox.c: each filter installed in a forked child.
 * execve, openat, bind, listen, ptrace, an executable mapping and sockets
 * of other kinds are killed with SIGSYS and reported by number on the
 * channel; what the loops need (a libevent loop over a socketpair and a
 * timer, TCP connect and accept, a splice through a pipe, a datagram to a
 * Unix socket, malloc of small and big blocks) works; the health filter
 * refuses what only workers do. Skipped under valgrind, which makes system
 * calls of its own that the filter forbids; in sanitizer builds only the
 * kills are checked.
 */
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>

#ifdef SMTPFRONT_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

#include "core/child.h"
#include "core/sandbox.h"

#define SKIP_UNDER_VALGRIND() do {				\
	if (under_valgrind()) {					\
		fprintf(stderr, "skipped under valgrind\n");	\
		return;						\
	}							\
	if (!can_filter) {					\
		fprintf(stderr, "skipped: no seccomp here\n");	\
		return;						\
	}							\
} while (0)

/* Can this system load a filter at all? A package build may run where it
 * cannot (a container that forbids seccomp(2)): main() asks once. */
static bool can_filter = true;

/* A sanitizer's runtime makes calls of its own (sigaltstack, and more when
 * it reports or checks for leaks at exit): a sandboxed child of such a
 * build cannot live long, which is why smtpfront turns the sandbox off
 * there. The kills are still checked. */
#if defined(SMTPFRONT_SANITIZED) && SMTPFRONT_SANITIZED
#define SKIP_IF_SANITIZED() do {					\
	fprintf(stderr, "skipped in a sanitizer build\n");		\
	return;								\
} while (0)
#else
#define SKIP_IF_SANITIZED() do { } while (0)
#endif

static bool
under_valgrind(void)
{
#ifdef SMTPFRONT_HAVE_VALGRIND_H
	return RUNNING_ON_VALGRIND;
#else
	return false;
#endif
}

struct outcome {
	int status;		/* waitpid's */
	bool reported;
	struct sandbox_report report;
};

/* Fork; the child enters role's sandbox, then runs body (its return value
 * is the exit status). The parent collects how it ended and what it said. */
static struct outcome
run_sandboxed(enum sandbox_role role, int (*body)(void *), void *arg)
{
	struct outcome o = { 0 };
	unsigned char msg[64];
	int sv[2];
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fflush(NULL);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		close(sv[0]);
		if (sandbox_enter(role, sv[1]) == -1)
			_exit(100);
		_exit(body(arg));
	}
	close(sv[1]);
	ck_assert_int_eq(waitpid(pid, &o.status, 0), pid);
	n = recv(sv[0], msg, sizeof(msg), MSG_DONTWAIT);
	if (n == (ssize_t)(1 + sizeof(o.report)) &&
	    msg[0] == CHILD_MSG_SANDBOX) {
		memcpy(&o.report, msg + 1, sizeof(o.report));
		o.reported = true;
	}
	close(sv[0]);
	return o;
}

static void
assert_killed_for(const struct outcome *o, long nr, const char *name)
{
	char buf[64];

	ck_assert_msg(WIFSIGNALED(o->status) && WTERMSIG(o->status) == SIGSYS,
	    "expected death by SIGSYS for %s, got status 0x%x", name,
	    o->status);
	ck_assert_msg(o->reported, "%s: nothing reported on the channel",
	    name);
	ck_assert_int_eq(o->report.nr, nr);
	ck_assert_str_eq(sandbox_syscall_name(o->report.arch, o->report.nr,
	    buf, sizeof(buf)), name);
}

static void
assert_exited_ok(const struct outcome *o)
{
	ck_assert_msg(WIFEXITED(o->status) && WEXITSTATUS(o->status) == 0,
	    "expected exit 0, got %s %d",
	    WIFSIGNALED(o->status) ? "signal" : "status",
	    WIFSIGNALED(o->status) ? WTERMSIG(o->status) :
	    WEXITSTATUS(o->status));
}

/* ---- forbidden calls: each a body that makes it ---- */

static int
do_execve(void *arg)
{
	char *const argv[] = { "/bin/true", NULL };

	(void)syscall(SYS_execve, "/bin/true", argv, NULL);
	return 1;		/* survived */
}

static int
do_openat(void *arg)
{
	(void)syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY);
	return 1;
}

static int
do_bind(void *arg)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd == -1)
		return 2;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	(void)bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	return 1;
}

static int
do_listen(void *arg)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd == -1)
		return 2;
	(void)listen(fd, 1);
	return 1;
}

static int
do_ptrace(void *arg)
{
	(void)ptrace(PTRACE_TRACEME, 0, NULL, NULL);
	return 1;
}

static int
do_mmap_exec(void *arg)
{
	(void)mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE |
	    MAP_ANONYMOUS, -1, 0);
	return 1;
}

static int
do_socket_raw(void *arg)
{
	(void)socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	return 1;
}

static int
do_socket_netlink(void *arg)
{
	(void)socket(AF_NETLINK, SOCK_DGRAM, 0);
	return 1;
}

static int
do_socket_unix_stream(void *arg)
{
	(void)socket(AF_UNIX, SOCK_STREAM, 0);
	return 1;
}

static int
do_ioctl_tiocsti(void *arg)
{
	char c = 'x';

	(void)ioctl(0, TIOCSTI, &c);
	return 1;
}

static int
do_outq(void *arg)
{
	int q;

	(void)ioctl(0, SIOCOUTQ, &q);
	return 1;
}

static int
do_accept4(void *arg)
{
	(void)accept4(-1, NULL, NULL, SOCK_NONBLOCK);
	return 1;
}

static int
do_splice(void *arg)
{
	(void)splice(-1, NULL, -1, NULL, 1, 0);
	return 1;
}

static const struct {
	int (*body)(void *);
	long nr;
	const char *name;
} forbidden[] = {
	{ do_execve, SYS_execve, "execve" },
	{ do_openat, SYS_openat, "openat" },
	{ do_bind, SYS_bind, "bind" },
	{ do_listen, SYS_listen, "listen" },
	{ do_ptrace, SYS_ptrace, "ptrace" },
	{ do_mmap_exec, SYS_mmap, "mmap" },
	{ do_socket_raw, SYS_socket, "socket" },
	{ do_socket_netlink, SYS_socket, "socket" },
	{ do_socket_unix_stream, SYS_socket, "socket" },
	{ do_ioctl_tiocsti, SYS_ioctl, "ioctl" },
};

START_TEST(test_worker_forbidden)
{
	struct outcome o;

	SKIP_UNDER_VALGRIND();
	o = run_sandboxed(SANDBOX_WORKER, forbidden[_i].body, NULL);
	assert_killed_for(&o, forbidden[_i].nr, forbidden[_i].name);
}
END_TEST

START_TEST(test_health_forbidden)
{
	struct outcome o;

	SKIP_UNDER_VALGRIND();
	o = run_sandboxed(SANDBOX_HEALTH, forbidden[_i].body, NULL);
	assert_killed_for(&o, forbidden[_i].nr, forbidden[_i].name);
}
END_TEST

/* What only a worker does is forbidden to the health process. */
START_TEST(test_health_no_worker_calls)
{
	struct outcome o;

	SKIP_UNDER_VALGRIND();
	o = run_sandboxed(SANDBOX_HEALTH, do_accept4, NULL);
	assert_killed_for(&o, SYS_accept4, "accept4");
	o = run_sandboxed(SANDBOX_HEALTH, do_splice, NULL);
	assert_killed_for(&o, SYS_splice, "splice");
	o = run_sandboxed(SANDBOX_HEALTH, do_outq, NULL);
	assert_killed_for(&o, SYS_ioctl, "ioctl");
}
END_TEST

/* ---- what the loops need ---- */

struct loop_state {
	struct event_base *base;
	int pair[2];		/* socketpair: written by the timer, read */
	int listen_fd;		/* a TCP listener made before the sandbox */
	struct sockaddr_in addr;
	const char *dgram_path;	/* a Unix datagram socket, like /dev/log */
	bool worker;
	int step;
};

static void
loop_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct loop_state *st = arg;
	char buf[16];

	if (read(fd, buf, sizeof(buf)) == 5 && memcmp(buf, "hello", 5) == 0)
		st->step = 2;
	event_base_loopbreak(st->base);
}

static void
loop_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct loop_state *st = arg;

	if (write(st->pair[1], "hello", 5) == 5)
		st->step = 1;
}

/* poll(2), as the worker's wake-up check uses it; bounded at 10 s. */
static bool
wait_readable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 10000) == 1;
}

/* TCP: connect (non-blocking, as upstreams and checks do), accept on the
 * worker's side, options, a splice through a pipe (workers only). */
static int
loop_tcp(struct loop_state *st)
{
	int c, a = -1, one = 1, err = 0, q = 0, p[2];
	socklen_t len = sizeof(err);
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	char buf[8];

	c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c == -1)
		return 10;
	if (connect(c, (struct sockaddr *)&st->addr, sizeof(st->addr)) == -1 &&
	    errno != EINPROGRESS)
		return 11;
	if (setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one,
	    sizeof(one)) == -1)
		return 12;
	if (!st->worker) {
		close(c);
		return 0;
	}
	if (!wait_readable(st->listen_fd))
		return 14;
	a = accept4(st->listen_fd, (struct sockaddr *)&peer, &plen,
	    SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (a == -1)
		return 13;
	if (getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len) == -1 || err != 0)
		return 15;
	if (ioctl(a, SIOCOUTQ, &q) == -1)
		return 16;
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) == -1)
		return 17;
	if (write(c, "body", 4) != 4)
		return 18;
	if (!wait_readable(a) ||
	    splice(a, NULL, p[1], NULL, 4, SPLICE_F_NONBLOCK) != 4)
		return 19;
	if (read(p[0], buf, sizeof(buf)) != 4 || memcmp(buf, "body", 4) != 0)
		return 20;
	close(p[0]);
	close(p[1]);
	shutdown(a, SHUT_WR);
	close(a);
	close(c);
	return 0;
}

/* A log line the way the syslog target sends it. */
static int
loop_dgram(const struct loop_state *st)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return 30;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", st->dgram_path);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		return 31;
	if (send(fd, "<22>x", 5, MSG_NOSIGNAL | MSG_DONTWAIT) != 5)
		return 32;
	close(fd);
	return 0;
}

static int
do_loop(void *arg)
{
	struct loop_state *st = arg;
	struct timeval tv = { 0, 10 * 1000 };
	struct event *rev, *tev;
	char *small, *big;
	int rc;

	/* After the filter, as the health process does it. */
	st->base = child_event_base();
	rev = event_new(st->base, st->pair[0], EV_READ | EV_PERSIST,
	    loop_on_read, st);
	tev = evtimer_new(st->base, loop_on_timer, st);
	if (rev == NULL || tev == NULL || event_add(rev, NULL) == -1 ||
	    evtimer_add(tev, &tv) == -1)
		return 3;
	if (event_base_dispatch(st->base) == -1 || st->step != 2)
		return 4;
	event_free(rev);
	event_free(tev);
	event_base_free(st->base);
	/* malloc: the heap (brk) and a big block (mmap), then free. */
	small = malloc(100);
	big = malloc(8 << 20);
	if (small == NULL || big == NULL)
		return 5;
	memset(big, 1, 8 << 20);
	free(big);
	free(small);
	if ((rc = loop_tcp(st)) != 0 || (rc = loop_dgram(st)) != 0)
		return rc;
	/* The exit path a child takes: exit(), stdio flushed. */
	fprintf(stderr, "sandboxed loop done\n");
	exit(0);
}

static void
loop_setup(struct loop_state *st, struct sockaddr_un *sun, int *dg,
    bool worker)
{
	socklen_t len = sizeof(st->addr);
	static char path[108];

	memset(st, 0, sizeof(*st));
	st->worker = worker;
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    st->pair), 0);
	st->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	ck_assert_int_ne(st->listen_fd, -1);
	st->addr.sin_family = AF_INET;
	st->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(st->listen_fd, (struct sockaddr *)&st->addr,
	    sizeof(st->addr)), 0);
	ck_assert_int_eq(listen(st->listen_fd, 8), 0);
	ck_assert_int_eq(getsockname(st->listen_fd,
	    (struct sockaddr *)&st->addr, &len), 0);
	snprintf(path, sizeof(path), "/tmp/test_sandbox.%ld.sock",
	    (long)getpid());
	unlink(path);
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", path);
	*dg = socket(AF_UNIX, SOCK_DGRAM, 0);
	ck_assert_int_ne(*dg, -1);
	ck_assert_int_eq(bind(*dg, (struct sockaddr *)sun, sizeof(*sun)), 0);
	st->dgram_path = path;
}

static void
loop_check(enum sandbox_role role)
{
	struct loop_state st;
	struct sockaddr_un sun;
	struct outcome o;
	char buf[16];
	int dg;

	loop_setup(&st, &sun, &dg, role == SANDBOX_WORKER);
	o = run_sandboxed(role, do_loop, &st);
	if (o.reported) {
		char name[64];

		ck_abort_msg("the loop was killed for %s", sandbox_syscall_name(
		    o.report.arch, o.report.nr, name, sizeof(name)));
	}
	assert_exited_ok(&o);
	/* The datagram arrived. */
	ck_assert_int_eq(recv(dg, buf, sizeof(buf), MSG_DONTWAIT), 5);
	close(dg);
	unlink(sun.sun_path);
	close(st.listen_fd);
	close(st.pair[0]);
	close(st.pair[1]);
}

START_TEST(test_worker_loop)
{
	SKIP_UNDER_VALGRIND();
	SKIP_IF_SANITIZED();
	loop_check(SANDBOX_WORKER);
}
END_TEST

START_TEST(test_health_loop)
{
	SKIP_UNDER_VALGRIND();
	SKIP_IF_SANITIZED();
	loop_check(SANDBOX_HEALTH);
}
END_TEST

/* /proc/PID/status of a sandboxed child says so. */
static int
do_wait_for_parent(void *arg)
{
	int fd = *(int *)arg;
	char c;

	return read(fd, &c, 1) == 1 ? 0 : 1;
}

static bool
status_has(pid_t pid, const char *line)
{
	char path[64], buf[4096];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, line) != NULL;
}

START_TEST(test_status_seccomp_and_nnp)
{
	int go[2], ready[2], status;
	char c;
	pid_t pid;

	SKIP_UNDER_VALGRIND();
	SKIP_IF_SANITIZED();
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(ready), 0);
	fflush(NULL);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		if (sandbox_enter(_i == 0 ? SANDBOX_WORKER : SANDBOX_HEALTH,
		    -1) == -1)
			_exit(100);
		if (write(ready[1], "r", 1) != 1)
			_exit(101);
		_exit(do_wait_for_parent(&go[0]));
	}
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	ck_assert(status_has(pid, "\nSeccomp:\t2\n"));
	ck_assert(status_has(pid, "\nNoNewPrivs:\t1\n"));
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(test_syscall_names)
{
	char buf[64];

	ck_assert_str_eq(sandbox_syscall_name(0, SYS_execve, buf,
	    sizeof(buf)), "execve");
	ck_assert_str_eq(sandbox_syscall_name(0, 99999, buf, sizeof(buf)),
	    "#99999");
}
END_TEST

static Suite *
sandbox_suite(void)
{
	Suite *s = suite_create("sandbox");
	TCase *tc;
	size_t nf = sizeof(forbidden) / sizeof(forbidden[0]);

	tc = tcase_create("sandbox_enter");
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_worker_forbidden, 0, (int)nf);
	tcase_add_loop_test(tc, test_health_forbidden, 0, (int)nf);
	tcase_add_test(tc, test_health_no_worker_calls);
	tcase_add_test(tc, test_worker_loop);
	tcase_add_test(tc, test_health_loop);
	tcase_add_loop_test(tc, test_status_seccomp_and_nnp, 0, 2);
	suite_add_tcase(s, tc);
	tc = tcase_create("sandbox_syscall_name");
	tcase_add_test(tc, test_syscall_names);
	suite_add_tcase(s, tc);
	return s;
}

/* A child tries and says so before it exits (a sanitizer's exit would not
 * survive the filter); the log line of a refusal says why. */
static bool
filters_load_here(void)
{
	int p[2], status;
	char c = 0;
	pid_t pid;

	if (pipe(p) == -1)
		return false;
	fflush(NULL);
	if ((pid = fork()) == -1)
		return false;
	if (pid == 0) {
		close(p[0]);
		if (sandbox_enter(SANDBOX_WORKER, -1) == 0 &&
		    write(p[1], "y", 1) != 1)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1)
		c = 0;
	close(p[0]);
	(void)waitpid(pid, &status, 0);
	return c == 'y';
}

int
main(void)
{
	SRunner *sr = srunner_create(sandbox_suite());
	int failed;

	if (!under_valgrind() && !(can_filter = filters_load_here()))
		fprintf(stderr, "test_sandbox: this system refuses seccomp "
		    "filters: every test that needs one is skipped\n");

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
