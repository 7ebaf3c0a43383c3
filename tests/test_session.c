/* SPDX-License-Identifier: MIT */
/*
 * Session-level tests of core/session.c, gate.c and relay.c: a real event
 * base, the client and the backend as loopback TCP connections driven by
 * the test, and the session's own log line read back for its result=.
 * One test per way a session can end (SPEC.md "Session log"), plus the
 * inactivity rules (a slow upload or a slow reader is activity) and the
 * 421s a client is told; and the upstream PROXY header of accept_proxy
 * listeners (split reads, bytes after it, LOCAL, untrusted sources,
 * timeouts, malformed headers, the rate limit on their log lines).
 * Bounded by timeouts, never by sleeps: the test spins the event loop
 * until what it waits for has happened.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>

#ifdef __SANITIZE_ADDRESS__
/* ASan's allocator: mallinfo2() knows nothing of it. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND	0
#endif

#include "balancer/balancer.h"
#include "config/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/runtime.h"
#include "core/shm.h"
#include "core/worker/clients.h"
#include "core/worker/session.h"
#include "core/worker/session_int.h"
#include "smtp/crc32c.h"
#include "smtp/proxy.h"

#define WAIT_MS		5000

static struct event_base *base;
static struct config *cfg;
static struct runtime rt;
static struct rt_listener listener;
static struct rt_bind bind0;
static struct rt_pool pool;
static unsigned server_slots[4] = { 0, 1, 2, 3 };
static struct session_env env;
static struct bal_pool *bal[1];
static int be_listen = -1;	/* the backend's listening socket */
static int be_port;
static int logpipe[2] = { -1, -1 };
static char logbuf[65536];
static size_t loglen;
static unsigned closed;		/* sessions freed */
/* The listener's sessions by result when the test started. */
static uint64_t results_before[METRICS_NRESULTS];
/* Session lines by result that log_clear() dropped. */
static unsigned lines_cleared[METRICS_NRESULTS];

static void log_clear(void);
static bool shm_made;
/* The pool's greeting_timeout for the next setup_with(). */
static const char *greeting_timeout = "1s";

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
on_close(void *arg)
{
	closed++;
}

static int
listen_any(int *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), on = 1;

	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* Read what the session logged so far (stderr is our pipe). */
static void
log_drain(void)
{
	ssize_t n;

	fflush(stderr);
	while (loglen < sizeof(logbuf) - 1 &&
	    (n = read(logpipe[0], logbuf + loglen,
	    sizeof(logbuf) - 1 - loglen)) > 0)
		loglen += (size_t)n;
	logbuf[loglen] = '\0';
}

/* Spin the loop for up to `ms`, or until done() says so. */
static bool
spin(bool (*done)(void *), void *arg, int ms)
{
	int64_t end = now_ms() + ms;
	struct timeval tick = { 0, 5000 };

	for (;;) {
		if (done != NULL && done(arg))
			return true;
		if (now_ms() >= end)
			return false;
		event_base_loopexit(base, &tick);
		event_base_dispatch(base);
		log_drain();
	}
}

static bool
session_logged(void *arg)
{
	return strstr(logbuf, "session client=") != NULL;
}

/* The value of key= in the session line ("" when absent). */
static const char *
logged(const char *key)
{
	static char val[1024];
	char pat[64];
	const char *p, *line = strstr(logbuf, "session client=");
	size_t n;

	val[0] = '\0';
	if (line == NULL)
		return val;
	snprintf(pat, sizeof(pat), " %s=", key);
	if ((p = strstr(line, pat)) == NULL)
		return val;
	p += strlen(pat);
	if (*p == '"') {
		p++;
		n = strcspn(p, "\"");
	} else {
		n = strcspn(p, " \n");
	}
	if (n >= sizeof(val))
		n = sizeof(val) - 1;
	memcpy(val, p, n);
	val[n] = '\0';
	return val;
}

static const char *
result_after_end(void)
{
	ck_assert_msg(spin(session_logged, NULL, WAIT_MS), "no session "
	    "line; log:\n%s", logbuf);
	return logged("result");
}

static void
setup_with(const char *extra_listener, const char *extra_pool)
{
	char yaml[4096];
	struct cfg_diag diag = { 0 };

	be_listen = listen_any(&be_port);
	snprintf(yaml, sizeof(yaml),
	    "hostname: sf.test\n"
	    "workers: 1\n"
	    "listeners:\n"
	    "  - name: smtp\n"
	    "    bind: [\"127.0.0.1:2525\"]\n"
	    "    pool: p\n"
	    "%s"
	    "pools:\n"
	    "  p:\n"
	    "    retries: 0\n"
	    "    connect_timeout: 1s\n"
	    "    greeting_timeout: %s\n"
	    "%s"
	    "    servers:\n"
	    "      - name: s1\n"
	    "        address: 127.0.0.1:%d\n",
	    extra_listener, greeting_timeout, extra_pool, be_port);
	cfg_set_resolve(false);
	cfg = cfg_load_string(yaml, strlen(yaml), "test.yaml", &diag);
	if (cfg == NULL)
		cfg_diag_print(&diag, stdout);
	cfg_diag_free(&diag);
	ck_assert_ptr_nonnull(cfg);

	ck_assert_int_eq(pipe2(logpipe, O_NONBLOCK), 0);
	ck_assert_int_ne(dup2(logpipe[1], 2), -1);
	log_init("test", false, LOG_MAIL, CFG_LOG_INFO);
	loglen = 0;
	logbuf[0] = '\0';

	/* One mapping per process (Check may run every test in one under
	 * valgrind); each test starts from a zeroed worker slot. */
	if (!shm_made) {
		clients_shm_register(cfg);
		shm_create(cfg);
		ck_assert_int_eq(shm_servers_reserve(4), 0);
		ck_assert_int_eq(shm_slot_prepare(0, 4, 1), 0);
		shm_made = true;
	}
	shm_slot_reset(0);
	shm_worker_attach(0);
	metrics_worker_attach();
	metrics_listener_results(0, results_before);
	memset(lines_cleared, 0, sizeof(lines_cleared));
	clients_attach();
	base = event_base_new();
	ck_assert_ptr_nonnull(base);

	memset(&bind0, 0, sizeof(bind0));
	bind0.fd = -1;
	bind0.addr = &cfg->listeners[0].binds[0];
	memset(&listener, 0, sizeof(listener));
	listener.cfg = &cfg->listeners[0];
	listener.binds = &bind0;
	listener.nbinds = 1;
	pool.cfg = &cfg->pools[0];
	pool.server_slot = server_slots;
	memset(&rt, 0, sizeof(rt));
	rt.cfg = cfg;
	rt.generation = 1;
	rt.listeners = &listener;
	rt.nlisteners = 1;
	rt.pools = &pool;
	rt.npools = 1;
	bal[0] = bal_pool_new(&cfg->pools[0]);
	memset(&env, 0, sizeof(env));
	env.base = base;
	env.rt = &rt;
	env.bal = bal;
	env.on_close = on_close;
	closed = 0;
}

static void
setup(void)
{
	setup_with("    client_timeout: 2s\n", "    server_timeout: 2s\n");
}

/* Session lines with result=r in the log. */
static unsigned
lines_with_result(const char *r)
{
	char pat[64];
	unsigned n = 0;
	size_t len;

	len = (size_t)snprintf(pat, sizeof(pat), "result=%s", r);
	for (const char *p = logbuf; (p = strstr(p, pat)) != NULL; p += len)
		if (p[len] == ' ' || p[len] == '\n')
			n++;
	return n;
}

/* Forget the lines read so far (those in the pipe stay), keeping count of
 * their results. */
static void
log_clear(void)
{
	for (int r = 0; r < METRICS_NRESULTS; r++)
		lines_cleared[r] += lines_with_result(metrics_result_names[r]);
	loglen = 0;
	logbuf[0] = '\0';
}

/*
 * Every session a test ended was counted in shared memory under the
 * result its line says (lines of rejected PROXY connections are
 * rate-limited, their counts are not).
 */
static void
assert_results_counted(void)
{
	uint64_t now[METRICS_NRESULTS];

	log_drain();
	if (loglen == sizeof(logbuf) - 1)
		return;			/* lines were cut: nothing to compare */
	metrics_listener_results(0, now);
	for (int r = 0; r < METRICS_NRESULTS; r++) {
		uint64_t counted = now[r] - results_before[r];
		unsigned logged_n = lines_cleared[r] +
		    lines_with_result(metrics_result_names[r]);

		if (r == METRICS_BAD_PROXY_HEADER || r == METRICS_UNTRUSTED_PROXY)
			ck_assert_msg(counted >= logged_n, "%s: %llu counted, "
			    "%u logged", metrics_result_names[r],
			    (unsigned long long)counted, logged_n);
		else
			ck_assert_msg(counted == logged_n, "%s: %llu counted, "
			    "%u logged; log:\n%s", metrics_result_names[r],
			    (unsigned long long)counted, logged_n, logbuf);
	}
}

static void
teardown(void)
{
	session_close_all(&env);
	assert_results_counted();
	bal_pool_free(bal[0]);
	event_base_free(base);
	close(be_listen);
	cfg_free(cfg);
}

/* ------------------------------------------------------------ drivers */

/* The session's end of the last client connection. */
static int session_fd = -1;

/* A client connection handed to a new session; returns our end. */
static int
client_connect(const char *src)
{
	struct sockaddr_in sin, peer;
	socklen_t len = sizeof(peer);
	int port, l = listen_any(&port), c, a, on = 1;

	session_listener_setup(l);	/* as the worker does */
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (src != NULL) {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		inet_pton(AF_INET, src, &sin.sin_addr);
		ck_assert_int_eq(bind(c, (struct sockaddr *)&sin,
		    sizeof(sin)), 0);
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((unsigned short)port);
	ck_assert_int_eq(connect(c, (struct sockaddr *)&sin, sizeof(sin)),
	    0);
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	do
		a = accept4(l, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK);
	while (a == -1 && errno == EAGAIN);
	ck_assert_int_ge(a, 0);
	close(l);
	session_fd = a;
	session_start(&env, &listener, &bind0, a, (struct sockaddr *)&peer,
	    len);
	return c;
}

static int accepted_fd;

static bool
be_accepted(void *arg)
{
	accepted_fd = accept4(be_listen, NULL, NULL, 0);
	return accepted_fd != -1;
}

/* The session's connection to the backend, PROXY header read. */
static int
backend_accept(void)
{
	char hdr[16];
	uint16_t len;

	ck_assert_msg(spin(be_accepted, NULL, WAIT_MS), "no backend "
	    "connection");
	/* v2 header: 16 bytes, then `len` bytes of addresses */
	ck_assert_int_eq(recv(accepted_fd, hdr, 16, MSG_WAITALL), 16);
	memcpy(&len, hdr + 14, 2);
	len = ntohs(len);
	{
		char rest[256];

		ck_assert_int_eq(recv(accepted_fd, rest, len, MSG_WAITALL),
		    (ssize_t)len);
	}
	return accepted_fd;
}

struct want_text {
	int fd;
	const char *text;
	char buf[8192];
	size_t len;
	bool eof;
};

static bool
got_text(void *arg)
{
	struct want_text *w = arg;
	ssize_t n = -1;

	for (;;) {
		if (w->len == sizeof(w->buf) - 1) {
			/* Keep the tail: what is awaited comes last. */
			memmove(w->buf, w->buf + w->len / 2, w->len - w->len / 2);
			w->len -= w->len / 2;
		}
		n = recv(w->fd, w->buf + w->len, sizeof(w->buf) - 1 - w->len,
		    MSG_DONTWAIT);
		if (n <= 0)
			break;
		w->len += (size_t)n;
	}
	if (n == 0 || (n == -1 && errno == ECONNRESET))
		w->eof = true;
	w->buf[w->len] = '\0';
	return w->text != NULL ? strstr(w->buf, w->text) != NULL : w->eof;
}

/* Wait until `text` arrived on fd (or, text NULL, its EOF); returns all
 * that arrived. */
static const char *
expect(int fd, const char *text)
{
	static struct want_text w;

	memset(&w, 0, sizeof(w));
	w.fd = fd;
	w.text = text;
	ck_assert_msg(spin(got_text, &w, WAIT_MS), "waited for \"%s\", got "
	    "%zu bytes ending \"%s\"; log: %.300s", text != NULL ? text :
	    "EOF", w.len, w.buf + (w.len > 200 ? w.len - 200 : 0), logbuf);
	return w.buf;
}

static void
say(int fd, const char *text)
{
	ck_assert_int_eq(send(fd, text, strlen(text), MSG_NOSIGNAL),
	    (ssize_t)strlen(text));
}

static void
reset(int fd)
{
	struct linger lg = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* Greeted session up to an open message: returns client and backend. */
static void
open_message(int *c, int *b)
{
	*c = client_connect(NULL);
	*b = backend_accept();
	say(*b, "220 be ESMTP\r\n");
	expect(*c, "220 be");
	say(*c, "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
	expect(*b, "DATA\r\n");
	say(*b, "250-be\r\n250 PIPELINING\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
	    "354 End data with <CR><LF>.<CR><LF>\r\n");
	expect(*c, "354 End");
	say(*c, "Subject: test\r\n\r\nfirst line\r\n");
	expect(*b, "first line\r\n");
}

/* ------------------------------------------------------------- endings */

START_TEST(test_quit_221_is_ok)
{
	int c = client_connect(NULL), b = backend_accept();

	say(b, "220 be ESMTP\r\n");
	expect(c, "220 be");
	say(c, "QUIT\r\n");
	expect(b, "QUIT\r\n");
	say(b, "221 2.0.0 Bye\r\n");
	close(b);
	expect(c, "221 2.0.0 Bye");
	expect(c, NULL);
	close(c);
	ck_assert_str_eq(result_after_end(), "ok");
	ck_assert_str_eq(logged("server"), "p/s1");
}
END_TEST

/* smtp-source: reads 221, then closes with SO_LINGER 0 (a reset). */
START_TEST(test_quit_221_then_client_reset_is_ok)
{
	int c = client_connect(NULL), b = backend_accept();

	say(b, "220 be ESMTP\r\n");
	expect(c, "220 be");
	say(c, "QUIT\r\n");
	expect(b, "QUIT\r\n");
	say(b, "221 2.0.0 Bye\r\n");
	expect(c, "221 2.0.0 Bye");
	reset(c);
	expect(b, NULL);
	close(b);
	ck_assert_str_eq(result_after_end(), "ok");
}
END_TEST

START_TEST(test_quiet_client_hangup_is_ok)
{
	int c = client_connect(NULL), b = backend_accept();

	say(b, "220 be ESMTP\r\n");
	expect(c, "220 be");
	say(c, "EHLO c\r\n");
	expect(b, "EHLO c\r\n");
	say(b, "250 be\r\n");
	expect(c, "250 be");
	close(c);
	expect(b, NULL);
	close(b);
	ck_assert_str_eq(result_after_end(), "ok");
}
END_TEST

START_TEST(test_client_gone_mid_command)
{
	int c = client_connect(NULL), b = backend_accept();

	say(b, "220 be ESMTP\r\n");
	expect(c, "220 be");
	say(c, "MAIL FROM:<a@x>\r\n");
	close(c);
	expect(b, "MAIL FROM");
	say(b, "250 2.1.0 Ok\r\n");
	close(b);
	ck_assert_str_eq(result_after_end(), "client-closed");
	ck_assert_str_eq(logged("last_error"), "client closed mid-command");
}
END_TEST

START_TEST(test_client_fin_mid_data)
{
	int c, b;

	open_message(&c, &b);
	close(c);
	expect(b, NULL);
	close(b);
	ck_assert_str_eq(result_after_end(), "client-closed");
	ck_assert_str_eq(logged("last_error"), "client closed mid-DATA");
}
END_TEST

START_TEST(test_client_reset_mid_data)
{
	int c, b;

	open_message(&c, &b);
	reset(c);
	expect(b, NULL);
	close(b);
	ck_assert_str_eq(result_after_end(), "client-closed");
	ck_assert_msg(strstr(logged("last_error"), "mid-DATA") != NULL, "%s",
	    logged("last_error"));
}
END_TEST

START_TEST(test_server_fin_mid_data)
{
	const char *got;
	int c, b;

	open_message(&c, &b);
	close(b);
	got = expect(c, NULL);
	ck_assert_msg(strstr(got, "250") == NULL, "%s", got);
	close(c);
	ck_assert_str_eq(result_after_end(), "server-closed");
	ck_assert_str_eq(logged("last_error"), "server closed mid-DATA; last "
	    "reply: 354 End data with <CR><LF>.<CR><LF>");
}
END_TEST

START_TEST(test_server_reset_mid_data)
{
	int c, b;

	open_message(&c, &b);
	reset(b);
	expect(c, NULL);
	close(c);
	ck_assert_str_eq(result_after_end(), "server-closed");
	ck_assert_msg(strstr(logged("last_error"), "server: Connection reset "
	    "by peer mid-DATA") != NULL, "%s", logged("last_error"));
}
END_TEST

/* The backend half-closes: the client still talks to a backend that no
 * longer answers, and learns of it from the FIN passed on. */
START_TEST(test_server_half_close_mid_data)
{
	int c, b;

	open_message(&c, &b);
	ck_assert_int_eq(shutdown(b, SHUT_WR), 0);
	expect(c, NULL);
	say(c, "more body\r\n.\r\n");
	expect(b, "more body\r\n.\r\n");
	close(c);
	expect(b, NULL);
	close(b);
	ck_assert_str_eq(result_after_end(), "server-closed");
	ck_assert_msg(strstr(logged("last_error"), "mid-DATA") != NULL, "%s",
	    logged("last_error"));
}
END_TEST

START_TEST(test_server_421_then_close)
{
	int c = client_connect(NULL), b = backend_accept();

	say(b, "220 be ESMTP\r\n");
	expect(c, "220 be");
	say(c, "EHLO c\r\n");
	expect(b, "EHLO");
	say(b, "250 be\r\n421 4.4.2 be Error: timeout exceeded\r\n");
	close(b);
	expect(c, "421 4.4.2 be");
	expect(c, NULL);
	close(c);
	ck_assert_str_eq(result_after_end(), "server-closed");
	ck_assert_str_eq(logged("last_error"),
	    "421 4.4.2 be Error: timeout exceeded");
}
END_TEST

START_TEST(test_gate_421_is_greeting_failed)
{
	int c = client_connect(NULL), b = backend_accept();
	const char *got;

	say(b, "421 4.3.2 All server ports are busy\r\n");
	got = expect(c, NULL);
	ck_assert_str_eq(got, "421 4.3.2 sf.test Service not available, try "
	    "again later\r\n");
	close(c);
	close(b);
	ck_assert_str_eq(result_after_end(), "greeting-failed");
	ck_assert_str_eq(logged("server"), "-");
	ck_assert_str_eq(logged("last_error"), "p/s1: greeting 421 4.3.2 All "
	    "server ports are busy");
}
END_TEST

START_TEST(test_refused_connect_is_no_backend)
{
	int c;

	close(be_listen);	/* nothing listens there any more */
	be_listen = socket(AF_INET, SOCK_STREAM, 0);
	c = client_connect(NULL);
	ck_assert_str_eq(expect(c, NULL), "421 4.3.2 sf.test Service not "
	    "available, try again later\r\n");
	close(c);
	ck_assert_str_eq(result_after_end(), "no-backend");
	ck_assert_str_eq(logged("last_error"),
	    "p/s1: connect: Connection refused");
}
END_TEST

START_TEST(test_client_gone_before_greeting)
{
	int c = client_connect(NULL), b = backend_accept();

	close(c);
	expect(b, NULL);
	close(b);
	ck_assert_str_eq(result_after_end(), "client-closed");
	ck_assert_str_eq(logged("last_error"),
	    "client closed before the greeting");
}
END_TEST

/* ----------------------------------------------------------- timeouts */

static void
setup_fast_timeouts(void)
{
	setup_with("    client_timeout: 300ms\n", "    server_timeout: 300ms\n");
}

static void
setup_fast_client(void)
{
	setup_with("    client_timeout: 300ms\n", "    server_timeout: 5s\n");
}

static void
setup_fast_server(void)
{
	setup_with("    client_timeout: 5s\n", "    server_timeout: 300ms\n");
}

START_TEST(test_client_timeout_says_421)
{
	int c = client_connect(NULL), b = backend_accept();
	const char *got;

	say(b, "220 be ESMTP\r\n");
	got = expect(c, NULL);
	ck_assert_str_eq(got, "220 be ESMTP\r\n421 4.4.2 sf.test Error: "
	    "timeout exceeded\r\n");
	expect(b, NULL);
	close(b);
	close(c);
	ck_assert_str_eq(result_after_end(), "client-timeout");
	ck_assert_str_eq(logged("last_error"), "client read timeout");
}
END_TEST

START_TEST(test_server_timeout)
{
	int c = client_connect(NULL), b = backend_accept();

	say(b, "220 be ESMTP\r\n");
	expect(c, "220 be");
	/* The client keeps talking; the backend never answers. */
	for (int i = 0; i < 4; i++) {
		say(c, "NOOP\r\n");
		spin(NULL, NULL, 100);
	}
	expect(c, NULL);
	close(c);
	close(b);
	ck_assert_str_eq(result_after_end(), "server-timeout");
	ck_assert_str_eq(logged("last_error"), "server read timeout");
}
END_TEST

/* A body trickling in over several timeouts is activity on both sides. */
START_TEST(test_slow_upload_is_not_a_timeout)
{
	int c, b;
	char chunk[1024];
	int64_t t0 = now_ms();

	memset(chunk, 'x', sizeof(chunk) - 2);
	chunk[sizeof(chunk) - 2] = '\0';
	open_message(&c, &b);
	while (now_ms() - t0 < 1500) {
		say(c, chunk);
		say(c, "\r\n");
		spin(NULL, NULL, 100);
		ck_assert_msg(strstr(logbuf, "session client=") == NULL, "%s",
		    logbuf);
	}
	say(c, ".\r\n");
	expect(b, "\r\n.\r\n");
	say(b, "250 2.0.0 Ok: queued\r\n");
	expect(c, "250 2.0.0 Ok");
	say(c, "QUIT\r\n");
	expect(b, "QUIT");
	say(b, "221 Bye\r\n");
	close(b);
	expect(c, NULL);
	close(c);
	ck_assert_str_eq(result_after_end(), "ok");
}
END_TEST

/* The backend sends more than the client takes at once; the client reads
 * slowly for longer than client_timeout: activity, not a timeout. */
START_TEST(test_slow_reader_is_not_a_timeout)
{
	static char big[256 * 1024], sink[32768];
	int c = client_connect(NULL), b = backend_accept(), rcv = 4096;
	size_t sent = 0, got = 0;
	int64_t t0;
	ssize_t n;

	setsockopt(c, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	say(b, "220 be ESMTP\r\n");
	expect(c, "220 be");
	say(c, "HELP\r\n");
	expect(b, "HELP");
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (i % 80) == 79 ? '\n' : 'y';
	memcpy(big, "214-", 4);
	fcntl(b, F_SETFL, O_NONBLOCK);
	t0 = now_ms();
	while (got < sizeof(big)) {
		if (sent < sizeof(big) &&
		    (n = send(b, big + sent, sizeof(big) - sent,
		    MSG_NOSIGNAL)) > 0)
			sent += (size_t)n;
		spin(NULL, NULL, 20);
		n = recv(c, sink, 16384, MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
		ck_assert_msg(strstr(logbuf, "session client=") == NULL, "%s",
		    logbuf);
		ck_assert_msg(now_ms() - t0 < 30000, "stuck at %zu", got);
	}
	ck_assert_int_gt(now_ms() - t0, 600);	/* over two timeouts */
	say(b, "214 end\r\n");
	expect(c, "214 end");
	say(c, "QUIT\r\n");
	expect(b, "QUIT");
	say(b, "221 Bye\r\n");
	close(b);
	expect(c, NULL);
	close(c);
	ck_assert_str_eq(result_after_end(), "ok");
}
END_TEST

/* ------------------------------------------------------------- limits */

static void
setup_per_client(void)
{
	setup_with("    max_connections_per_client: 2\n",
	    "    source_prefix: {ipv4: 24, ipv6: 64}\n");
}

START_TEST(test_per_client_limit)
{
	int a1 = client_connect("127.0.0.1"), a2, a3, o1;
	const char *got;

	backend_accept();
	a2 = client_connect("127.0.0.2");
	backend_accept();
	a3 = client_connect("127.0.0.3");
	got = expect(a3, NULL);
	ck_assert_str_eq(got, "421 4.7.0 sf.test Error: too many connections "
	    "from 127.0.0.3\r\n");
	ck_assert_str_eq(result_after_end(), "client-limit");
	/* Another network is not counted against this one. */
	o1 = client_connect("127.0.1.1");
	backend_accept();
	/* One leaves, room again. */
	close(a1);
	spin(NULL, NULL, 100);
	log_clear();
	a3 = client_connect("127.0.0.4");
	backend_accept();
	spin(NULL, NULL, 100);
	ck_assert_msg(strstr(logbuf, "client-limit") == NULL, "%s", logbuf);
	close(a2);
	close(a3);
	close(o1);
}
END_TEST

static void
setup_max_connections(void)
{
	setup_with("    max_connections: 1\n", "");
}

START_TEST(test_max_connections_overload)
{
	int a = client_connect(NULL), b;
	const char *got;

	backend_accept();
	b = client_connect(NULL);
	got = expect(b, NULL);
	ck_assert_str_eq(got, "421 4.7.0 sf.test Too many connections, try "
	    "again later\r\n");
	ck_assert_str_eq(result_after_end(), "overload");
	close(a);
	close(b);
}
END_TEST

/* ----------------------------------------------------------- upstream */

#define TRUSTED_LOOPBACK	"    accept_proxy: true\n" \
				"    trusted_proxies: [127.0.0.0/8, \"::1/128\"]\n"

static void
setup_upstream(void)
{
	setup_with(TRUSTED_LOOPBACK "    proxy_timeout: 2s\n"
	    "    client_timeout: 2s\n", "    server_timeout: 2s\n");
}

static void
setup_upstream_fast(void)
{
	setup_with(TRUSTED_LOOPBACK "    proxy_timeout: 300ms\n", "");
}

static void
setup_upstream_v1(void)
{
	setup_with(TRUSTED_LOOPBACK, "    proxy_protocol: v1\n");
}

static void
setup_upstream_untrusted(void)
{
	setup_with("    accept_proxy: true\n"
	    "    trusted_proxies: [192.0.2.0/24, \"2001:db8::/32\"]\n", "");
}

static void
setup_upstream_per_client(void)
{
	setup_with(TRUSTED_LOOPBACK "    max_connections_per_client: 1\n",
	    "    source_prefix: {ipv4: 24, ipv6: 64}\n");
}

static void
setup_upstream_tls(void)
{
	setup_with(TRUSTED_LOOPBACK "    mode: tls\n", "");
}

static void
sa_set(struct sockaddr_storage *ss, const char *ip, unsigned port)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
		s6->sin6_port = htons((unsigned short)port);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
		s4->sin_port = htons((unsigned short)port);
	}
}

/* A v2 PROXY header for src:sport -> dst:dport; returns its length. */
static size_t
v2_header(uint8_t *buf, const char *src, unsigned sport, const char *dst,
    unsigned dport)
{
	struct sockaddr_storage a, b;
	int n;

	sa_set(&a, src, sport);
	sa_set(&b, dst, dport);
	n = proxy_v2_encode(buf, PROXY_HEADER_MAX, (struct sockaddr *)&a,
	    (struct sockaddr *)&b);
	ck_assert_int_gt(n, 0);
	return (size_t)n;
}

static void
say_bytes(int fd, const void *p, size_t n)
{
	ck_assert_int_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

struct hdr_wait {
	int fd;
	struct proxy_info info;
	enum proxy_result r;
};

static bool
hdr_decodable(void *arg)
{
	struct hdr_wait *w = arg;
	uint8_t buf[PROXY_HEADER_MAX];
	ssize_t n;

	if (w->fd == -1 && (w->fd = accept4(be_listen, NULL, NULL, 0)) == -1)
		return false;
	n = recv(w->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (n <= 0)
		return n == 0;
	w->r = proxy_decode(buf, (size_t)n, &w->info);
	return w->r != PROXY_NEED_MORE;
}

/* The session's backend connection and the PROXY header it got (any
 * version), consumed. */
static int
backend_accept_info(struct proxy_info *info)
{
	struct hdr_wait w = { .fd = -1, .r = PROXY_NEED_MORE };
	char skip[PROXY_HEADER_MAX];

	ck_assert_msg(spin(hdr_decodable, &w, WAIT_MS), "no backend "
	    "connection with a PROXY header; log: %s", logbuf);
	ck_assert_msg(w.r == PROXY_OK, "backend got a bad header: %s",
	    proxy_result_names[w.r]);
	ck_assert_int_eq(recv(w.fd, skip, w.info.header_len, MSG_WAITALL),
	    (ssize_t)w.info.header_len);
	*info = w.info;
	return w.fd;
}

static void
assert_sa(const struct sockaddr_storage *ss, const char *ip, unsigned port)
{
	char text[INET6_ADDRSTRLEN] = "?";
	unsigned got = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, text, sizeof(text));
		got = ntohs(s4->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof(text));
		got = ntohs(s6->sin6_port);
	}
	ck_assert_str_eq(text, ip);
	if (port != 0)
		ck_assert_uint_eq(got, port);
}

/* A client that wrote `first` before smtpfront accepted it (so those bytes
 * are readable at accept), handed to a new session. */
static int
client_connect_with(const char *src, const void *first, size_t len)
{
	struct sockaddr_in sin, peer;
	socklen_t plen = sizeof(peer);
	int port, l = listen_any(&port), c, a, on = 1;
	struct pollfd pfd;

	session_listener_setup(l);	/* as the worker does */
	c = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, src, &sin.sin_addr);
	ck_assert_int_eq(bind(c, (struct sockaddr *)&sin, sizeof(sin)), 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((unsigned short)port);
	ck_assert_int_eq(connect(c, (struct sockaddr *)&sin, sizeof(sin)),
	    0);
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	if (len > 0)
		say_bytes(c, first, len);
	do
		a = accept4(l, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK);
	while (a == -1 && errno == EAGAIN);
	ck_assert_int_ge(a, 0);
	if (len > 0) {
		/* Loopback delivers at once; wait for it all the same. */
		pfd.fd = a;
		pfd.events = POLLIN;
		ck_assert_int_eq(poll(&pfd, 1, WAIT_MS), 1);
	}
	close(l);
	session_start(&env, &listener, &bind0, a, (struct sockaddr *)&peer,
	    plen);
	return c;
}

/* No connection ever reached the backend. */
static void
assert_backend_untouched(void)
{
	int fd = accept4(be_listen, NULL, NULL, SOCK_NONBLOCK);

	ck_assert_msg(fd == -1, "the backend was connected");
}

/* The client saw nothing but the end of the connection. */
static void
assert_silent_close(int c)
{
	const char *got = expect(c, NULL);

	ck_assert_msg(got[0] == '\0', "the client was told \"%s\"", got);
}

START_TEST(test_upstream_v2_is_the_client)
{
	uint8_t hdr[PROXY_HEADER_MAX];
	size_t n = v2_header(hdr, "203.0.113.7", 51234, "192.0.2.1", 25);
	struct proxy_info info;
	int c = client_connect("127.0.0.9"), b;

	/* The balancer writes its header and then waits for a greeting. */
	say_bytes(c, hdr, n);
	b = backend_accept_info(&info);
	ck_assert_int_eq(info.version, 2);
	ck_assert_int_eq(info.command, PROXY_CMD_PROXY);
	assert_sa(&info.src, "203.0.113.7", 51234);
	assert_sa(&info.dst, "192.0.2.1", 25);
	say(b, "220 be ESMTP\r\n");
	expect(c, "220 be");
	say(c, "QUIT\r\n");
	expect(b, "QUIT\r\n");
	say(b, "221 2.0.0 Bye\r\n");
	close(b);
	expect(c, NULL);
	close(c);
	ck_assert_str_eq(result_after_end(), "ok");
	ck_assert_str_eq(logged("client"), "[203.0.113.7]:51234");
	ck_assert_str_eq(logged("proxy"), "v2");
	ck_assert_str_eq(logged("proxy_in"), "v2");
	ck_assert_str_eq(logged("bytes_in"), "6");
	/* proxy_in= comes right after proxy= */
	ck_assert_ptr_nonnull(strstr(logbuf, " proxy=v2 proxy_in=v2 "));
}
END_TEST

/* A v1 TCP6 header, then the client's first command in the same write:
 * the command waits for the greeting and is never lost. */
START_TEST(test_upstream_v1_ipv6_and_bytes_after)
{
	static const char in[] = "PROXY TCP6 2001:db8::7 2001:db8::25 "
	    "40000 25\r\nEHLO early\r\n";
	struct proxy_info info;
	int c = client_connect("127.0.0.9"), b;

	say(c, in);
	b = backend_accept_info(&info);
	ck_assert_int_eq(info.version, 2);	/* the pool's, not the input's */
	assert_sa(&info.src, "2001:db8::7", 40000);
	assert_sa(&info.dst, "2001:db8::25", 25);
	say(b, "220 be ESMTP\r\n");
	expect(c, "220 be");
	expect(b, "EHLO early\r\n");
	say(b, "250 be\r\n");
	expect(c, "250 be");
	close(c);
	expect(b, NULL);
	close(b);
	ck_assert_str_eq(result_after_end(), "ok");
	ck_assert_str_eq(logged("client"), "[2001:db8::7]:40000");
	ck_assert_str_eq(logged("proxy_in"), "v1");
	ck_assert_str_eq(logged("bytes_in"), "12");
}
END_TEST

/*
 * Every split of a v1 and of a v2 header (with a CRC32C TLV) followed by
 * client bytes: sent as two writes at each byte boundary, and once a byte
 * at a time. The backend gets the client's address and every byte after.
 */
static void
upstream_split(const uint8_t *in, size_t len, size_t cut, bool bytewise,
    const char *ip, unsigned port)
{
	struct proxy_info info;
	char want[64];
	int c = client_connect("127.0.0.9"), b;

	if (bytewise) {
		for (size_t i = 0; i < len; i++) {
			say_bytes(c, in + i, 1);
			spin(NULL, NULL, 1);
		}
	} else {
		say_bytes(c, in, cut);
		spin(NULL, NULL, 1);
		say_bytes(c, in + cut, len - cut);
	}
	b = backend_accept_info(&info);
	assert_sa(&info.src, ip, port);
	say(b, "220 be\r\n");
	expect(b, "NOOP\r\n");
	say(b, "250 ok\r\n");
	expect(c, "220 be\r\n250 ok\r\n");
	close(c);
	expect(b, NULL);
	close(b);
	ck_assert_str_eq(result_after_end(), "ok");
	snprintf(want, sizeof(want), "[%s]:%u", ip, port);
	ck_assert_str_eq(logged("client"), want);
	ck_assert_str_eq(logged("bytes_in"), "6");
	log_clear();
}

START_TEST(test_upstream_split_reads)
{
	static const char v1[] = "PROXY TCP4 198.51.100.9 192.0.2.1 1025 25"
	    "\r\nNOOP\r\n";
	/* v2 TCP4 with a CRC32C TLV (crc of the whole header with the
	 * field zeroed: computed below), then client bytes. */
	uint8_t v2[PROXY_HEADER_MAX + 8];
	size_t n = v2_header(v2, "198.51.100.10", 1026, "192.0.2.1", 25);
	uint32_t crc;

	v2[15] = (uint8_t)(v2[15] + 7);		/* len += one 7-byte TLV */
	memcpy(v2 + n, "\x03\x00\x04\0\0\0\0", 7);
	crc = crc32c_update(0, v2, n + 7);
	v2[n + 3] = (uint8_t)(crc >> 24);
	v2[n + 4] = (uint8_t)(crc >> 16);
	v2[n + 5] = (uint8_t)(crc >> 8);
	v2[n + 6] = (uint8_t)crc;
	memcpy(v2 + n + 7, "NOOP\r\n", 6);
	n += 13;

	for (size_t cut = 1; cut < sizeof(v1) - 1; cut++)
		upstream_split((const uint8_t *)v1, sizeof(v1) - 1, cut, false,
		    "198.51.100.9", 1025);
	for (size_t cut = 1; cut < n; cut++)
		upstream_split(v2, n, cut, false, "198.51.100.10", 1026);
	upstream_split((const uint8_t *)v1, sizeof(v1) - 1, 0, true,
	    "198.51.100.9", 1025);
	upstream_split(v2, n, 0, true, "198.51.100.10", 1026);
}
END_TEST

/* v2 LOCAL (a balancer's own check) and v1 UNKNOWN carry no client: the
 * real endpoints stay, and a v2 pool says LOCAL. */
START_TEST(test_upstream_local_passes_local)
{
	uint8_t local[16];
	struct proxy_info info;
	char want[64];
	int c, b;
	struct sockaddr_in me;
	socklen_t len = sizeof(me);

	ck_assert_int_eq(proxy_v2_encode_local(local, sizeof(local)), 16);
	for (int k = 0; k < 2; k++) {
		c = client_connect("127.0.0.9");
		ck_assert_int_eq(getsockname(c, (struct sockaddr *)&me, &len),
		    0);
		if (k == 0)
			say_bytes(c, local, sizeof(local));
		else
			say(c, "PROXY UNKNOWN ff::1 ff::2 1 2\r\n");
		b = backend_accept_info(&info);
		ck_assert_int_eq(info.version, 2);
		ck_assert_int_eq(info.command, PROXY_CMD_LOCAL);
		say(b, "220 be\r\n");
		expect(c, "220 be");
		close(c);
		expect(b, NULL);
		close(b);
		ck_assert_str_eq(result_after_end(), "ok");
		snprintf(want, sizeof(want), "[127.0.0.9]:%u",
		    ntohs(me.sin_port));
		ck_assert_str_eq(logged("client"), want);
		ck_assert_str_eq(logged("proxy_in"), k == 0 ? "v2" : "v1");
		log_clear();
	}
}
END_TEST

/* A v1 pool gets the upstream connection's real endpoints for LOCAL. */
START_TEST(test_upstream_local_to_v1_pool)
{
	uint8_t local[16];
	struct proxy_info info;
	struct sockaddr_in me;
	socklen_t len = sizeof(me);
	int c = client_connect("127.0.0.9"), b;

	ck_assert_int_eq(getsockname(c, (struct sockaddr *)&me, &len), 0);
	ck_assert_int_eq(proxy_v2_encode_local(local, sizeof(local)), 16);
	say_bytes(c, local, sizeof(local));
	b = backend_accept_info(&info);
	ck_assert_int_eq(info.version, 1);
	ck_assert(info.usable);
	assert_sa(&info.src, "127.0.0.9", ntohs(me.sin_port));
	assert_sa(&info.dst, "127.0.0.1", 2525);
	close(c);
	expect(b, NULL);
	close(b);
	ck_assert_str_eq(result_after_end(), "client-closed");
	ck_assert_str_eq(logged("proxy"), "v1");
	ck_assert_str_eq(logged("proxy_in"), "v2");
}
END_TEST

/* A forged header from outside trusted_proxies: closed without a word,
 * never connected, logged with what it had sent. */
START_TEST(test_upstream_untrusted_source)
{
	static const char forged[] = "PROXY TCP4 203.0.113.66 192.0.2.1 1 25"
	    "\r\nEHLO x\r\n";
	int c = client_connect_with("127.0.0.9", forged, sizeof(forged) - 1);

	assert_silent_close(c);
	close(c);
	ck_assert_str_eq(result_after_end(), "untrusted-proxy");
	ck_assert_msg(strncmp(logged("client"), "[127.0.0.9]:", 12) == 0,
	    "%s", logged("client"));
	ck_assert_str_eq(logged("server"), "-");
	ck_assert_str_eq(logged("proxy_in"), "");
	ck_assert_str_eq(logged("last_error"), "untrusted source; first bytes: "
	    "PROXY TCP4 203.0.113.66 192.0.2.1 1 25\\x0d\\x0aEHLO x\\x0d\\x0a");
	assert_backend_untouched();
}
END_TEST

/* Nothing readable yet: closed at once all the same, never waited for. */
START_TEST(test_upstream_untrusted_says_nothing_waits_for_nothing)
{
	int64_t t0 = now_ms();
	int c = client_connect("127.0.0.9");

	assert_silent_close(c);
	ck_assert_int_lt(now_ms() - t0, 1000);
	close(c);
	ck_assert_str_eq(result_after_end(), "untrusted-proxy");
	ck_assert_str_eq(logged("last_error"), "untrusted source");
	assert_backend_untouched();
}
END_TEST

/* proxy_timeout runs from accept: bytes trickling in get no more time. */
START_TEST(test_upstream_timeout)
{
	int c = client_connect("127.0.0.9");
	int64_t t0 = now_ms();
	const char *d;

	say(c, "PROXY TCP4 1.");
	for (const char *p = "2.3.4 5.6.7.8 1 25"; *p; p++) {
		if (spin(session_logged, NULL, 50))
			break;
		say_bytes(c, p, 1);
	}
	ck_assert_str_eq(result_after_end(), "bad-proxy-header");
	ck_assert_int_lt(now_ms() - t0, 700);
	ck_assert_int_ge(now_ms() - t0, 250);
	d = logged("last_error");
	ck_assert_msg(strncmp(d, "timeout: v1: input ends before CRLF (",
	    37) == 0, "%s", d);
	ck_assert_msg(strstr(d, "; first bytes: PROXY TCP4 1.") != NULL, "%s",
	    d);
	assert_silent_close(c);
	close(c);
	assert_backend_untouched();
}
END_TEST

START_TEST(test_upstream_timeout_nothing_sent)
{
	int c = client_connect("127.0.0.9");

	ck_assert_str_eq(result_after_end(), "bad-proxy-header");
	ck_assert_str_eq(logged("last_error"), "timeout: no input (0 bytes in "
	    "300 ms)");
	assert_silent_close(c);
	close(c);
}
END_TEST

static const struct {
	const char *in;
	size_t len;		/* 0: strlen(in) */
	bool close_after;	/* then the client closes */
	const char *error;	/* last_error, up to "; first bytes" */
} bad_headers[] = {
	{ "GET / HTTP/1.0\r\n\r\n", 0, false, "not a PROXY header: neither "
	    "'PROXY ' nor the v2 signature" },
	{ "EHLO client.example\r\n", 0, false, "not a PROXY header" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 0123 25\r\n", 0, false, "bad address: "
	    "v1: source port is not 0..65535 without leading zeros" },
	{ "PROXY TCP4 ::1 ::1 1 25\r\n", 0, false, "bad address: v1: TCP4 "
	    "source is not an IPv4 address" },
	{ "PROXY TCP4  1.2.3.4 5.6.7.8 1 25\r\n", 0, false, "malformed "
	    "header" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 25\n", 0, false, "malformed header" },
	{ "PROXY TCP4 1.2.3.4", 0, true, "truncated: v1: input ends before "
	    "CRLF (closed after 18 bytes)" },
	{ "\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c", 16, true, "truncated" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 25 extra extra extra extra extra "
	    "extra extra extra extra extra extra extra extra extra", 0, false,
	    "too long" },
	/* v2 TCP4 with a CRC32C TLV holding a wrong value */
	{ "\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x13" "\x01\x02\x03\x04\x05\x06\x07"
	    "\x08\x00\x01\x00\x19" "\x03\x00\x04\xde\xad\xbe\xef", 35, false,
	    "bad CRC32C" },
};

/* Malformed headers: closed without a word, never connected, logged
 * with their class and the first bytes. */
START_TEST(test_upstream_malformed)
{
	size_t len = bad_headers[_i].len != 0 ? bad_headers[_i].len :
	    strlen(bad_headers[_i].in);
	int c = client_connect("127.0.0.9");
	const char *e;
	char dump[400];

	say_bytes(c, bad_headers[_i].in, len);
	if (bad_headers[_i].close_after)
		shutdown(c, SHUT_WR);
	ck_assert_str_eq(result_after_end(), "bad-proxy-header");
	e = logged("last_error");
	ck_assert_msg(strncmp(e, bad_headers[_i].error,
	    strlen(bad_headers[_i].error)) == 0, "%s", e);
	/* the dump is proxy_escape's, as the log line carries it (the
	 * harness's parser unescapes \\ and \" but not \xNN) */
	proxy_escape(dump, sizeof(dump), (const uint8_t *)bad_headers[_i].in,
	    len, 64);
	{
		char want[500];
		const char *raw = strstr(logbuf, "; first bytes: ");

		snprintf(want, sizeof(want), "; first bytes: %s\"", dump);
		ck_assert_msg(raw != NULL && strncmp(raw, want,
		    strlen(want)) == 0, "%s\nwanted %s", logbuf, want);
	}
	assert_silent_close(c);
	close(c);
	assert_backend_untouched();
}
END_TEST

/* A connection that closes before a byte of a header (a balancer's TCP
 * check) is not a malformed header. */
START_TEST(test_upstream_closed_before_header)
{
	int c = client_connect("127.0.0.9");

	close(c);
	ck_assert_str_eq(result_after_end(), "client-closed");
	ck_assert_str_eq(logged("last_error"), "client closed before the "
	    "PROXY header");
	ck_assert_str_eq(logged("proxy_in"), "");
	assert_backend_untouched();
}
END_TEST

/* The per-client limit counts the header's client, not the balancer. */
START_TEST(test_upstream_per_client_limit_uses_header)
{
	uint8_t hdr[PROXY_HEADER_MAX];
	struct proxy_info info;
	const char *got;
	int c1, c2, c3, b1, b2;

	c1 = client_connect("127.0.0.9");
	say_bytes(c1, hdr, v2_header(hdr, "203.0.113.7", 1000, "192.0.2.1",
	    25));
	b1 = backend_accept_info(&info);
	/* same balancer, another client network: admitted */
	c2 = client_connect("127.0.0.9");
	say_bytes(c2, hdr, v2_header(hdr, "198.51.100.7", 1000, "192.0.2.1",
	    25));
	b2 = backend_accept_info(&info);
	assert_sa(&info.src, "198.51.100.7", 1000);
	/* same network as the first: over the limit of 1 */
	c3 = client_connect("127.0.0.9");
	say_bytes(c3, hdr, v2_header(hdr, "203.0.113.8", 1000, "192.0.2.1",
	    25));
	got = expect(c3, NULL);
	ck_assert_str_eq(got, "421 4.7.0 sf.test Error: too many connections "
	    "from 203.0.113.8\r\n");
	ck_assert_str_eq(result_after_end(), "client-limit");
	ck_assert_str_eq(logged("client"), "[203.0.113.8]:1000");
	ck_assert_str_eq(logged("proxy_in"), "v2");
	close(c1);
	close(c2);
	close(c3);
	close(b1);
	close(b2);
}
END_TEST

/* Implicit TLS behind a balancer: the header, then the client's bytes go
 * straight to the server (no gate, no greeting awaited). */
START_TEST(test_upstream_tls_relays_after_header)
{
	static const char in[] = "PROXY TCP4 203.0.113.9 192.0.2.1 5555 465"
	    "\r\n\x16\x03\x01hello";
	struct proxy_info info;
	int c = client_connect("127.0.0.9"), b;

	say_bytes(c, in, sizeof(in) - 1);
	b = backend_accept_info(&info);
	assert_sa(&info.src, "203.0.113.9", 5555);
	assert_sa(&info.dst, "192.0.2.1", 465);
	expect(b, "\x16\x03\x01hello");
	say(b, "\x16\x03\x03server");
	expect(c, "\x16\x03\x03server");
	close(c);
	expect(b, NULL);
	close(b);
	ck_assert_str_eq(result_after_end(), "ok");
	ck_assert_str_eq(logged("proxy_in"), "v1");
}
END_TEST

static unsigned
count(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static bool
rejects_reported(void *arg)
{
	return strstr(logbuf, "not logged") != NULL;
}

/* A flood of rejected connections: at most 10 lines a second, then one
 * line with the number left out. */
START_TEST(test_upstream_rejections_rate_limited)
{
	int64_t t0 = now_ms();
	int c;

	for (int i = 0; i < 25; i++) {
		c = client_connect("127.0.0.9");
		close(c);
	}
	ck_assert_uint_eq(closed, 25);
	/* All 25 within the first second (the window opens with the
	 * first rejection): exactly 10 lines and the report of 15. */
	ck_assert_int_lt(now_ms() - t0, 900);
	ck_assert_msg(spin(rejects_reported, NULL, 3000), "%s", logbuf);
	ck_assert_uint_eq(count(logbuf, "result=untrusted-proxy"), 10);
	ck_assert_msg(strstr(logbuf, "session: 15 more rejected PROXY "
	    "connection(s) not logged (at most 10 lines a second per "
	    "worker)") != NULL, "%s", logbuf);
	ck_assert_uint_eq(count(logbuf, "not logged"), 1);
	/* the next second starts afresh */
	c = client_connect("127.0.0.9");
	close(c);
	log_drain();
	ck_assert_uint_eq(count(logbuf, "result=untrusted-proxy"), 11);
}
END_TEST

/* trusted_proxies matching, IPv4 and IPv6; a mapped source is IPv4. */
START_TEST(test_upstream_trusted)
{
	static const struct {
		const char *ip;
		bool trusted;
	} v[] = {
		{ "10.1.2.3", true }, { "11.0.0.1", false },
		{ "::ffff:10.9.9.9", true }, { "::ffff:11.0.0.1", false },
		{ "2001:db8:1::1", true }, { "2001:db9::1", false },
		{ "192.0.2.1", true }, { "192.0.2.2", false },
		{ "::ffff:192.0.2.2", false }, { "::1", false },
		{ "198.51.100.1", true }, { "198.51.101.255", true },
		{ "198.51.102.0", false }, { "198.51.99.255", false },
		{ "fe80::1", false }, { "0.0.0.0", false },
	};
	struct cfg_cidr cidrs[4] = {
		{ AF_INET, { 10 }, 8 },
		{ AF_INET6, { 0x20, 0x01, 0x0d, 0xb8 }, 32 },
		{ AF_INET, { 192, 0, 2, 1 }, 32 },
		{ AF_INET, { 198, 51, 100, 0 }, 23 },
	};
	struct cfg_listener lc;
	struct sockaddr_storage ss;

	memset(&lc, 0, sizeof(lc));
	lc.trusted_proxies = cidrs;
	lc.ntrusted_proxies = 4;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		sa_set(&ss, v[i].ip, 25);
		ck_assert_msg(upstream_trusted(&lc, (struct sockaddr *)&ss) ==
		    v[i].trusted, "%s", v[i].ip);
	}
	/* ::/0 trusts every IPv6 source, not IPv4 ones */
	cidrs[0].family = AF_INET6;
	memset(cidrs[0].addr, 0, 16);
	cidrs[0].prefix = 0;
	lc.ntrusted_proxies = 1;
	sa_set(&ss, "fe80::1", 25);
	ck_assert(upstream_trusted(&lc, (struct sockaddr *)&ss));
	sa_set(&ss, "10.0.0.1", 25);
	ck_assert(!upstream_trusted(&lc, (struct sockaddr *)&ss));
}
END_TEST

/* ---------------------------------------------------------- deadlines */

/*
 * A peer that sends `text` a byte every `every_ms` while the loop runs,
 * until `done` says what the test waits for has happened. The bounds
 * below are the issue's, in real elapsed time.
 */
struct trickle {
	int fd;
	const char *text;
	size_t at;
	int every_ms;
	int64_t next_ms;
	bool (*done)(struct trickle *);
	struct want_text w;	/* what the client got, for done() */
};

static bool
trickling(void *arg)
{
	struct trickle *t = arg;

	if (t->done(t))
		return true;
	if (now_ms() >= t->next_ms && t->text[t->at] != '\0') {
		/* The other end may be gone: that is what is awaited. */
		(void)send(t->fd, t->text + t->at, 1, MSG_NOSIGNAL);
		t->at++;
		t->next_ms = now_ms() + t->every_ms;
	}
	return false;
}

static bool
session_freed(void *arg)
{
	return closed > 0;
}

static void
setup_linger(void)
{
	setup_with("    max_connections: 1\n", "");
}

/* At most 4 KiB of a refused client's input is drained, then it is
 * closed: it has not read our 421 anyway. */
START_TEST(test_refused_flooder_closed_after_4k)
{
	static char junk[16384];
	int a = client_connect(NULL), c;
	int64_t t0;

	backend_accept();
	memset(junk, 'x', sizeof(junk));
	t0 = now_ms();
	c = client_connect(NULL);
	expect(c, "Too many connections");
	(void)send(c, junk, sizeof(junk), MSG_NOSIGNAL);
	ck_assert_msg(spin(session_freed, NULL, 3000), "not closed");
	ck_assert_int_lt(now_ms() - t0, 3000);
	close(a);
	close(c);
}
END_TEST

/* Two tricklers, driven together; done when both sessions are freed. */
struct tricklers {
	struct trickle t[2];
	int64_t first_ms;	/* when the first of them was freed */
};

static bool
trickle_never(struct trickle *t)
{
	return false;
}

static bool
both_trickling(void *arg)
{
	struct tricklers *tt = arg;

	(void)trickling(&tt->t[0]);
	(void)trickling(&tt->t[1]);
	if (closed >= 1 && tt->first_ms == 0)
		tt->first_ms = now_ms();
	return closed >= 2;
}

/*
 * Every linger is a deadline: a refused client (max_connections) sending
 * a byte every 2 s, and a client the server hung up on (a half-close: the
 * server still reads) sending one a second, are both closed when their
 * 10 s are over; their bytes never extend them. One test for both, so
 * the suite waits those 10 s once.
 */
START_TEST(test_lingers_are_deadlines)
{
	struct tricklers tt = { .t = {
	    { .text = "NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n", .every_ms = 1000,
	      .done = trickle_never },
	    { .text = "EHLO trickler.example.org\r\nNOOP\r\n", .every_ms = 2000,
	      .done = trickle_never } } };
	int a = client_connect(NULL), b = backend_accept(), c;
	int64_t t0, took;

	say(b, "220 be ESMTP\r\n");
	expect(a, "220 be");
	say(b, "421 4.3.2 be going down\r\n");
	ck_assert_int_eq(shutdown(b, SHUT_WR), 0);
	expect(a, NULL);	/* the FIN passed on */
	t0 = now_ms();
	c = client_connect(NULL);
	expect(c, "Too many connections, try again later\r\n");
	ck_assert_uint_eq(closed, 0);
	tt.t[0].fd = a;
	tt.t[1].fd = c;
	tt.t[0].next_ms = tt.t[1].next_ms = now_ms();
	ck_assert_msg(spin(both_trickling, &tt, 15000), "%u of 2 closed after "
	    "15 s", closed);
	took = now_ms() - t0;
	ck_assert_msg(took < 11000, "both closed after %lld ms",
	    (long long)took);
	ck_assert_msg(tt.first_ms - t0 >= 9400, "one closed after %lld ms, "
	    "before its linger ended", (long long)(tt.first_ms - t0));
	/* they did trickle all along */
	ck_assert_uint_ge(tt.t[0].at, 8);
	ck_assert_uint_ge(tt.t[1].at, 5);
	ck_assert_uint_eq(lines_with_result("overload"), 1);
	ck_assert_msg(strstr(logbuf, " result=server-closed last_error=\"421 "
	    "4.3.2 be going down\" sid=") != NULL, "%s", logbuf);
	close(a);
	close(b);
	close(c);
}
END_TEST

static void
setup_slow_greeting(void)
{
	greeting_timeout = "3s";
	setup_with("", "");
	greeting_timeout = "1s";
}

static bool
trickle_client_got_421(struct trickle *t)
{
	return got_text(&t->w);
}

/* A backend whose first line trickles in a byte a second: the client gets
 * its 421 when greeting_timeout after the connect is over. */
START_TEST(test_greeting_trickle_deadline)
{
	struct trickle t = { .text = "220 slow.example.org ESMTP\r\n",
	    .every_ms = 1000, .done = trickle_client_got_421 };
	int64_t t0 = now_ms(), took;
	int c = client_connect(NULL);

	t.fd = backend_accept();
	t.next_ms = now_ms();
	t.w.fd = c;
	t.w.text = "421 4.3.2 sf.test Service not available";
	ck_assert_msg(spin(trickling, &t, 8000), "no 421; client got \"%s\"",
	    t.w.buf);
	took = now_ms() - t0;
	ck_assert_msg(took < 3500, "421 after %lld ms", (long long)took);
	ck_assert_msg(took >= 2900, "421 after %lld ms, before "
	    "greeting_timeout", (long long)took);
	ck_assert_uint_ge(t.at, 3);
	/* Nothing of the backend's partial line reached the client. */
	ck_assert_msg(strstr(t.w.buf, "220") == NULL, "%s", t.w.buf);
	ck_assert_str_eq(result_after_end(), "greeting-failed");
	ck_assert_str_eq(logged("last_error"), "p/s1: timeout waiting for "
	    "greeting");
	close(c);
	close(t.fd);
}
END_TEST

static void
setup_upstream_2s(void)
{
	setup_with(TRUSTED_LOOPBACK "    proxy_timeout: 2s\n", "");
}

static bool
trickle_logged(struct trickle *t)
{
	return session_logged(NULL);
}

/* An upstream header sent a byte every 100 ms ends at proxy_timeout. */
START_TEST(test_upstream_trickle_deadline)
{
	struct trickle t = { .text = "PROXY TCP4 203.0.113.7 192.0.2.1 51234 "
	    "25\r\nEHLO x\r\n", .every_ms = 100, .done = trickle_logged };
	int64_t t0 = now_ms(), took;

	t.fd = client_connect("127.0.0.9");
	t.next_ms = now_ms();
	ck_assert_msg(spin(trickling, &t, 6000), "no session line");
	took = now_ms() - t0;
	ck_assert_msg(took >= 1950 && took < 2500, "ended after %lld ms",
	    (long long)took);
	ck_assert_uint_ge(t.at, 15);
	ck_assert_str_eq(logged("result"), "bad-proxy-header");
	ck_assert_msg(strncmp(logged("last_error"), "timeout: ", 9) == 0,
	    "%s", logged("last_error"));
	assert_silent_close(t.fd);
	close(t.fd);
	assert_backend_untouched();
}
END_TEST

/* ------------------------------------------------------------- bounds */

/*
 * A client that pipelines NOOPs (1 MB) and never reads a reply, against a
 * backend that answers every one as fast as it can: the queue toward the
 * client stops at 64 KiB and the client socket's send buffer is capped,
 * so the worker's memory stays bounded whatever the client does.
 */
struct pipeliner {
	int c, b;
	size_t sent, owed, answered;
	int64_t moved_ms;	/* last time a byte moved anywhere */
	size_t heap0, heap_max;
};

#define PIPELINE_BYTES	(1024 * 1024)

/* Bytes the process has allocated now. */
static size_t
heap_now(void)
{
#ifdef __SANITIZE_ADDRESS__
	return __sanitizer_get_current_allocated_bytes();
#else
	return mallinfo2().uordblks;
#endif
}

static bool
pipelining(void *arg)
{
	static const char noops[] = "NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n"
	    "NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n";
	static char replies[64 * 14 + 1], in[16384];
	struct pipeliner *p = arg;
	size_t heap;
	bool moved = false;
	ssize_t n;

	if (replies[0] == '\0')
		for (int i = 0; i < 64; i++)
			memcpy(replies + i * 14, "250 2.0.0 Ok\r\n", 14);
	while (p->sent < PIPELINE_BYTES &&
	    (n = send(p->c, noops, sizeof(noops) - 1,
	    MSG_DONTWAIT | MSG_NOSIGNAL)) > 0) {
		p->sent += (size_t)n;
		moved = true;
	}
	while ((n = recv(p->b, in, sizeof(in), MSG_DONTWAIT)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			p->owed += in[i] == '\n';
		moved = true;
	}
	while (p->owed > 0) {
		size_t k = p->owed < 64 ? p->owed : 64;

		n = send(p->b, replies, k * 14, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n <= 0)
			break;
		/* a reply cut short is finished by the next send */
		p->owed -= (size_t)n / 14;
		p->answered += (size_t)n / 14;
		if (n % 14 != 0) {
			ck_assert_int_eq(send(p->b, replies + n % 14,
			    14 - (size_t)n % 14, MSG_NOSIGNAL),
			    14 - (ssize_t)(n % 14));
			p->owed--;
			p->answered++;
		}
		moved = true;
	}
	heap = heap_now();
	if (heap > p->heap_max)
		p->heap_max = heap;
	if (moved)
		p->moved_ms = now_ms();
	/* Done when the flood is sent, or everything stands still (the
	 * client's sends blocked behind the replies it does not read). */
	return now_ms() - p->moved_ms > 500;
}

START_TEST(test_pipeliner_memory_bounded)
{
	struct pipeliner p = { 0 };
	int sndbuf = 0, rcvbuf = 4096;
	socklen_t len = sizeof(sndbuf);

	p.c = client_connect(NULL);
	/* A client that reads nothing has little room for what it gets. */
	setsockopt(p.c, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	ck_assert_int_eq(getsockopt(session_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
	    &len), 0);
	p.b = backend_accept();
	say(p.b, "220 be ESMTP\r\n");
	expect(p.c, "220 be");
	p.heap0 = p.heap_max = heap_now();
	p.moved_ms = now_ms();
	ck_assert(spin(pipelining, &p, 20000));
	printf("pipeliner: %zu bytes sent, %zu replies sent by the backend, "
	    "worker heap +%zu bytes at most, client SO_SNDBUF %d\n", p.sent,
	    p.answered, p.heap_max - p.heap0, sndbuf);
	ck_assert_int_le(sndbuf, 128 * 1024);
	if (RUNNING_ON_VALGRIND) {
		/* memcheck's allocator shows no heap figures: the bound is
		 * checked in the other builds */
		printf("pipeliner: heap not measurable under valgrind\n");
	} else {
		/* the queue toward the client did fill: the bound was
		 * pressed on */
		ck_assert_uint_gt(p.heap_max - p.heap0, 32 * 1024);
		ck_assert_uint_le(p.heap_max - p.heap0, 64 * 1024);
	}
	close(p.c);
	close(p.b);
}
END_TEST

static Suite *
session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc;

	tc = tcase_create("session_verdict");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_quit_221_is_ok);
	tcase_add_test(tc, test_quit_221_then_client_reset_is_ok);
	tcase_add_test(tc, test_quiet_client_hangup_is_ok);
	tcase_add_test(tc, test_client_gone_mid_command);
	tcase_add_test(tc, test_client_fin_mid_data);
	tcase_add_test(tc, test_client_reset_mid_data);
	tcase_add_test(tc, test_server_fin_mid_data);
	tcase_add_test(tc, test_server_reset_mid_data);
	tcase_add_test(tc, test_server_half_close_mid_data);
	tcase_add_test(tc, test_server_421_then_close);
	tcase_add_test(tc, test_gate_421_is_greeting_failed);
	tcase_add_test(tc, test_refused_connect_is_no_backend);
	tcase_add_test(tc, test_client_gone_before_greeting);
	suite_add_tcase(s, tc);

	tc = tcase_create("relay_client_timeout");
	tcase_add_checked_fixture(tc, setup_fast_client, teardown);
	tcase_add_test(tc, test_client_timeout_says_421);
	suite_add_tcase(s, tc);
	tc = tcase_create("relay_server_timeout");
	tcase_add_checked_fixture(tc, setup_fast_server, teardown);
	tcase_add_test(tc, test_server_timeout);
	suite_add_tcase(s, tc);

	tc = tcase_create("relay_inactivity");
	tcase_add_checked_fixture(tc, setup_fast_timeouts, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_slow_upload_is_not_a_timeout);
	tcase_add_test(tc, test_slow_reader_is_not_a_timeout);
	suite_add_tcase(s, tc);

	tc = tcase_create("session_admit");
	tcase_add_checked_fixture(tc, setup_per_client, teardown);
	tcase_add_test(tc, test_per_client_limit);
	suite_add_tcase(s, tc);
	tc = tcase_create("session_overload");
	tcase_add_checked_fixture(tc, setup_max_connections, teardown);
	tcase_add_test(tc, test_max_connections_overload);
	suite_add_tcase(s, tc);

	tc = tcase_create("upstream_read");
	tcase_add_checked_fixture(tc, setup_upstream, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_upstream_v2_is_the_client);
	tcase_add_test(tc, test_upstream_v1_ipv6_and_bytes_after);
	tcase_add_test(tc, test_upstream_split_reads);
	tcase_add_test(tc, test_upstream_local_passes_local);
	tcase_add_test(tc, test_upstream_closed_before_header);
	tcase_add_loop_test(tc, test_upstream_malformed, 0,
	    sizeof(bad_headers) / sizeof(bad_headers[0]));
	suite_add_tcase(s, tc);
	tc = tcase_create("upstream_timeout");
	tcase_add_checked_fixture(tc, setup_upstream_fast, teardown);
	tcase_add_test(tc, test_upstream_timeout);
	tcase_add_test(tc, test_upstream_timeout_nothing_sent);
	suite_add_tcase(s, tc);
	tc = tcase_create("upstream_v1_pool");
	tcase_add_checked_fixture(tc, setup_upstream_v1, teardown);
	tcase_add_test(tc, test_upstream_local_to_v1_pool);
	suite_add_tcase(s, tc);
	tc = tcase_create("upstream_untrusted");
	tcase_add_checked_fixture(tc, setup_upstream_untrusted, teardown);
	tcase_add_test(tc, test_upstream_untrusted_source);
	tcase_add_test(tc, test_upstream_untrusted_says_nothing_waits_for_nothing);
	tcase_add_test(tc, test_upstream_rejections_rate_limited);
	suite_add_tcase(s, tc);
	tc = tcase_create("upstream_admit");
	tcase_add_checked_fixture(tc, setup_upstream_per_client, teardown);
	tcase_add_test(tc, test_upstream_per_client_limit_uses_header);
	suite_add_tcase(s, tc);
	tc = tcase_create("upstream_tls");
	tcase_add_checked_fixture(tc, setup_upstream_tls, teardown);
	tcase_add_test(tc, test_upstream_tls_relays_after_header);
	suite_add_tcase(s, tc);
	tc = tcase_create("session_deadline_linger");
	tcase_add_checked_fixture(tc, setup_linger, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_lingers_are_deadlines);
	tcase_add_test(tc, test_refused_flooder_closed_after_4k);
	suite_add_tcase(s, tc);
	tc = tcase_create("session_deadline_greeting");
	tcase_add_checked_fixture(tc, setup_slow_greeting, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_greeting_trickle_deadline);
	suite_add_tcase(s, tc);
	tc = tcase_create("session_deadline_header");
	tcase_add_checked_fixture(tc, setup_upstream_2s, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_upstream_trickle_deadline);
	suite_add_tcase(s, tc);

	tc = tcase_create("relay_bounds");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_pipeliner_memory_bounded);
	suite_add_tcase(s, tc);

	tc = tcase_create("upstream_trusted");
	tcase_add_test(tc, test_upstream_trusted);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(session_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
