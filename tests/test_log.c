/* SPDX-License-Identifier: MIT */
/*
 * Tests of core/log.c: a log that is not read never blocks the writer.
 * stderr as a pipe and as a stream socket nobody reads, syslog as a
 * datagram socket nobody reads: lines are dropped and counted, the file
 * status of the shared stderr is left alone, a line taken in part is
 * finished before the next, the first line after the stall says how many
 * were lost; syslog lines are RFC 3164; a syslog socket that went away is
 * connected again; a forked child counts from zero. A writer that blocked
 * would hang the test into Check's timeout.
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <termios.h>
#include <unistd.h>

#include <check.h>

#include "config/config.h"
#include "core/log.h"

static int saved_stderr = -1;
static char sockdir[64];
static char sockpath[108];

static void
setup(void)
{
	saved_stderr = dup(STDERR_FILENO);
	ck_assert_int_ne(saved_stderr, -1);
	snprintf(sockdir, sizeof(sockdir), "/tmp/test_log.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(sockdir));
	snprintf(sockpath, sizeof(sockpath), "%s/log.sock", sockdir);
}

static void
teardown(void)
{
	/* Back to a stderr the test runner reads, and a log that uses it. */
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	log_init("test", false, LOG_MAIL, CFG_LOG_INFO);
	/* The next test (in this process under CK_FORK=no) starts clean: no
	 * word on a finished test's stack, no drops left to report. */
	log_count_drops_in(NULL);
	log_info("(end of test)");
	unlink(sockpath);
	rmdir(sockdir);
}

/* Make fd 2 the write end of a fresh pipe (blocking, as a shell's is);
 * the read end is returned. */
static int
stderr_pipe(void)
{
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_ne(dup2(p[1], STDERR_FILENO), -1);
	close(p[1]);
	return p[0];
}

/* Everything readable on fd now, NUL-terminated in buf. */
static size_t
drain(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t n;
	int fl = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	while (len < cap - 1 && (n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	fcntl(fd, F_SETFL, fl);
	buf[len] = '\0';
	return len;
}

static size_t
count(const char *s, const char *what)
{
	size_t n = 0;

	for (const char *p = s; (p = strstr(p, what)) != NULL; p++)
		n++;
	return n;
}

/* The sum of N over the "log: N lines dropped ..." lines in s. */
static uint64_t
reported(const char *s)
{
	const char *p = s;
	unsigned long long n, sum = 0;

	while ((p = strstr(p, "warning: log: ")) != NULL) {
		if (sscanf(p, "warning: log: %llu line", &n) == 1 &&
		    strstr(p, " dropped while the log was not taking them") !=
		    NULL)
			sum += n;
		p++;
	}
	return sum;
}

static char big[1000];

static void
fill_big(void)
{
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
}

START_TEST(test_stderr_pipe_nobody_reads)
{
	static char buf[1 << 20];
	static uint64_t word;
	int rd = stderr_pipe(), fl_before, fl_after;
	uint64_t base, dropped, sum;
	size_t lines;

	fill_big();
	fl_before = fcntl(STDERR_FILENO, F_GETFL);
	log_init("test", false, LOG_MAIL, CFG_LOG_INFO);
	base = log_dropped();
	word = 7;
	log_count_drops_in(&word);
	/* What was dropped before is added to the word. */
	ck_assert_uint_eq(word, 7 + base);
	base += 7;
	/* 1 MB into a 64 KiB pipe that nobody reads. */
	for (int i = 0; i < 1000; i++)
		log_info("line %d %s", i, big);
	fl_after = fcntl(STDERR_FILENO, F_GETFL);
	/* The shared description (a shell's terminal or pipe) is unchanged. */
	ck_assert_int_eq(fl_before, fl_after);
	ck_assert(!(fl_after & O_NONBLOCK));
	dropped = log_dropped() - base;
	ck_assert_uint_gt(dropped, 0);
	ck_assert_uint_eq(word, base + dropped);
	drain(rd, buf, sizeof(buf));
	/* Whole lines only; each written or dropped. */
	ck_assert_uint_eq(count(buf, "\n"), count(buf, "test["));
	lines = count(buf, "]: line ");
	ck_assert_uint_eq(lines + dropped, 1000);
	sum = reported(buf);

	log_info("after");
	drain(rd, buf, sizeof(buf));
	/* Every drop told, the last ones right before the line after. */
	ck_assert_uint_eq(sum + reported(buf), dropped);
	ck_assert_uint_gt(reported(buf), 0);
	ck_assert_ptr_nonnull(strstr(buf, "]: after\n"));
	ck_assert(strstr(buf, "warning: log: ") < strstr(buf, "]: after"));
	/* Said once. */
	log_info("later");
	drain(rd, buf, sizeof(buf));
	ck_assert_uint_eq(reported(buf), 0);
	ck_assert_ptr_nonnull(strstr(buf, "]: later\n"));
	ck_assert_uint_eq(log_dropped(), base + dropped);
	close(rd);
}
END_TEST

START_TEST(test_stderr_stream_socket_whole_lines)
{
	static char buf[1 << 21];
	int sv[2], small = 4096, fl_before;
	uint64_t base, dropped;
	size_t lines;
	regex_t re;
	char *line, *save;

	fill_big();
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	ck_assert_int_ne(dup2(sv[1], STDERR_FILENO), -1);
	close(sv[1]);
	fl_before = fcntl(STDERR_FILENO, F_GETFL);
	log_init("test", false, LOG_MAIL, CFG_LOG_INFO);
	base = log_dropped();
	for (int i = 0; i < 500; i++)
		log_info("line %d %s", i, big);
	ck_assert_int_eq(fcntl(STDERR_FILENO, F_GETFL), fl_before);
	dropped = log_dropped() - base;
	ck_assert_uint_gt(dropped, 0);
	drain(sv[0], buf, sizeof(buf));
	log_info("after");
	drain(sv[0], buf + strlen(buf), sizeof(buf) - strlen(buf));
	/* Each line was written or dropped, and every drop told. */
	ck_assert_uint_eq(count(buf, "]: line "), 500 - dropped);
	ck_assert_uint_eq(reported(buf), dropped);
	ck_assert_uint_eq(count(buf, "]: after"), 1);
	/* A line the socket took in part was finished before the next one:
	 * every line is whole. */
	ck_assert_int_eq(regcomp(&re, "^[^ ]+ test\\[[0-9]+\\]: (line [0-9]+ "
	    "x{999}|warning: log: [0-9]+ lines? dropped while the log was not "
	    "taking them|after)$", REG_EXTENDED | REG_NOSUB), 0);
	lines = 0;
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save), lines++)
		ck_assert_msg(regexec(&re, line, 0, NULL, 0) == 0,
		    "not a whole line: %.80s...", line);
	regfree(&re);
	ck_assert_uint_ge(lines, 500 - dropped + 2);
	close(sv[0]);
}
END_TEST

/*
 * A terminal nobody reads (the user pressed ^S, or walked away from a
 * pty): a terminal takes part of a line, so this checks that the rest
 * goes out before the next line, and that the terminal the user's shell
 * shares keeps its blocking mode.
 */
START_TEST(test_stderr_terminal_nobody_reads)
{
	static char buf[1 << 21];
	struct termios t;
	int master, slave, fl_before;
	uint64_t base, dropped;
	size_t lines;
	regex_t re;
	char *line, *save;

	fill_big();
	master = posix_openpt(O_RDWR | O_NOCTTY);
	ck_assert_int_ne(master, -1);
	ck_assert_int_eq(grantpt(master), 0);
	ck_assert_int_eq(unlockpt(master), 0);
	slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	ck_assert_int_ne(slave, -1);
	ck_assert_int_eq(tcgetattr(slave, &t), 0);
	cfmakeraw(&t);
	ck_assert_int_eq(tcsetattr(slave, TCSANOW, &t), 0);
	ck_assert_int_ne(dup2(slave, STDERR_FILENO), -1);
	close(slave);
	fl_before = fcntl(STDERR_FILENO, F_GETFL);
	log_init("test", false, LOG_MAIL, CFG_LOG_INFO);
	base = log_dropped();
	for (int i = 0; i < 500; i++)
		log_info("line %d %s", i, big);
	ck_assert_int_eq(fcntl(STDERR_FILENO, F_GETFL), fl_before);
	ck_assert(!(fl_before & O_NONBLOCK));
	dropped = log_dropped() - base;
	ck_assert_uint_gt(dropped, 0);
	drain(master, buf, sizeof(buf));
	log_info("after");
	/* The rest of a line taken in part, then the count, then "after". */
	drain(master, buf + strlen(buf), sizeof(buf) - strlen(buf));
	ck_assert_uint_eq(count(buf, "]: line "), 500 - dropped);
	ck_assert_uint_eq(reported(buf), dropped);
	ck_assert_uint_eq(count(buf, "]: after"), 1);
	ck_assert_int_eq(regcomp(&re, "^[^ ]+ test\\[[0-9]+\\]: (line [0-9]+ "
	    "x{999}|warning: log: [0-9]+ lines? dropped while the log was not "
	    "taking them|after)$", REG_EXTENDED | REG_NOSUB), 0);
	lines = 0;
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save), lines++)
		ck_assert_msg(regexec(&re, line, 0, NULL, 0) == 0,
		    "not a whole line: %.80s...", line);
	regfree(&re);
	ck_assert_uint_ge(lines, 500 - dropped + 2);
	close(master);
}
END_TEST

static int
dgram_bind(void)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

	ck_assert_int_ne(fd, -1);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sockpath);
	unlink(sockpath);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

static void
syslog_to(const char *path, enum cfg_log_target target)
{
	static struct config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.log.target = target;
	cfg.log.facility = LOG_LOCAL3;
	cfg.log.level = CFG_LOG_INFO;
	snprintf(cfg.log.syslog_socket, sizeof(cfg.log.syslog_socket), "%s",
	    path);
	log_setup(&cfg);
}

/* The next datagram, or "" when none is queued. */
static const char *
dgram_next(int fd, char *buf, size_t cap)
{
	ssize_t n = recv(fd, buf, cap - 1, MSG_DONTWAIT);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

START_TEST(test_syslog_rfc3164_datagrams_dropped_and_reported)
{
	char buf[4096];
	int fd = dgram_bind(), got = 0, rd = stderr_pipe();
	uint64_t base, dropped;
	regex_t re;

	fill_big();
	log_init("test", false, LOG_MAIL, CFG_LOG_INFO);
	syslog_to(sockpath, CFG_LOG_SYSLOG);
	log_info("hello %d", 42);
	/* local3.info = 19 * 8 + 6; no hostname, as syslog(3) on /dev/log. */
	ck_assert_int_eq(regcomp(&re, "^<158>[A-Z][a-z]{2} [ 1-3][0-9] "
	    "[0-9]{2}:[0-9]{2}:[0-9]{2} test\\[[0-9]+\\]: hello 42$",
	    REG_EXTENDED | REG_NOSUB), 0);
	dgram_next(fd, buf, sizeof(buf));
	ck_assert_msg(regexec(&re, buf, 0, NULL, 0) == 0, "%s", buf);
	regfree(&re);
	log_warnx("careful");
	ck_assert_ptr_nonnull(strstr(dgram_next(fd, buf, sizeof(buf)),
	    "test["));
	ck_assert_int_eq(strncmp(buf, "<156>", 5), 0);	/* local3.warning */
	ck_assert_ptr_nonnull(strstr(buf, "]: warning: careful"));

	/* Nobody reads: the queue fills, the rest is dropped. */
	base = log_dropped();
	for (int i = 0; i < 1000; i++)
		log_info("line %d %s", i, big);
	dropped = log_dropped() - base;
	ck_assert_uint_gt(dropped, 0);
	while (dgram_next(fd, buf, sizeof(buf))[0] != '\0') {
		ck_assert_ptr_nonnull(strstr(buf, "]: line "));
		got++;
	}
	ck_assert_uint_eq((uint64_t)got + dropped, 1000);
	log_info("after");
	dgram_next(fd, buf, sizeof(buf));
	ck_assert_int_eq(strncmp(buf, "<156>", 5), 0);
	ck_assert_uint_eq(reported(buf), dropped);
	ck_assert_ptr_nonnull(strstr(dgram_next(fd, buf, sizeof(buf)),
	    "]: after"));
	/* Nothing went to stderr. */
	ck_assert_uint_eq(drain(rd, buf, sizeof(buf)), 0);
	close(fd);
	close(rd);
}
END_TEST

START_TEST(test_syslog_socket_gone_and_back)
{
	char buf[4096];
	int fd = dgram_bind(), rd = stderr_pipe();
	uint64_t before;

	log_init("test", false, LOG_MAIL, CFG_LOG_INFO);
	syslog_to(sockpath, CFG_LOG_SYSLOG);
	log_info("one");
	ck_assert_ptr_nonnull(strstr(dgram_next(fd, buf, sizeof(buf)),
	    "]: one"));
	/* The syslog daemon restarts: a new socket at the same path. */
	close(fd);
	fd = dgram_bind();
	before = log_dropped();
	log_info("two");
	ck_assert_ptr_nonnull(strstr(dgram_next(fd, buf, sizeof(buf)),
	    "]: two"));
	ck_assert_uint_eq(log_dropped(), before);
	/* Gone for good: dropped, counted, never sent to stderr. */
	close(fd);
	unlink(sockpath);
	log_info("three");
	ck_assert_uint_eq(log_dropped(), before + 1);
	ck_assert_uint_eq(drain(rd, buf, sizeof(buf)), 0);
	close(rd);
}
END_TEST

START_TEST(test_syslog_unreachable_falls_back_to_stderr)
{
	char buf[4096];
	int rd = stderr_pipe();

	log_init("test", false, LOG_MAIL, CFG_LOG_INFO);
	syslog_to(sockpath, CFG_LOG_SYSLOG);	/* nothing bound there */
	log_info("here");
	drain(rd, buf, sizeof(buf));
	ck_assert_ptr_nonnull(strstr(buf, "warning: log: target syslog, but "));
	ck_assert_ptr_nonnull(strstr(buf, sockpath));
	ck_assert_ptr_nonnull(strstr(buf, "]: here\n"));
	close(rd);
}
END_TEST

START_TEST(test_fork_counts_from_zero)
{
	char buf[1 << 16];
	static uint64_t word;
	int rd = stderr_pipe(), status;
	uint64_t base;
	pid_t pid;

	fill_big();
	log_init("test", false, LOG_MAIL, CFG_LOG_INFO);
	word = 0;
	log_count_drops_in(&word);
	base = word;
	for (int i = 0; i < 200; i++)
		log_info("line %d %s", i, big);
	ck_assert_uint_gt(word, base);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		uint64_t parent = word;

		/* The parent's drops are the parent's: the child neither
		 * counts them nor writes to the parent's word. */
		if (log_dropped() != 0)
			_exit(1);
		for (int i = 0; i < 200; i++)
			log_info("child %d %s", i, big);
		_exit(word == parent && log_dropped() > 0 ? 0 : 2);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	drain(rd, buf, sizeof(buf));
	/* Only the parent's own drops in its count. */
	log_info("parent");
	drain(rd, buf, sizeof(buf));
	ck_assert_uint_eq(reported(buf), word - base);
	close(rd);
}
END_TEST

static Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc;

	tc = tcase_create("stderr");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_stderr_pipe_nobody_reads);
	tcase_add_test(tc, test_stderr_stream_socket_whole_lines);
	tcase_add_test(tc, test_stderr_terminal_nobody_reads);
	tcase_add_test(tc, test_fork_counts_from_zero);
	suite_add_tcase(s, tc);
	tc = tcase_create("syslog");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_syslog_rfc3164_datagrams_dropped_and_reported);
	tcase_add_test(tc, test_syslog_socket_gone_and_back);
	tcase_add_test(tc, test_syslog_unreachable_falls_back_to_stderr);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(log_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
