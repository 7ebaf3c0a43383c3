/* SPDX-License-Identifier: MIT */
/*
 * Session-level tests of core/session.c, gate.c and relay.c: a real event
 * base, the client and the backend as loopback TCP connections driven by
 * the test, and the session's own log line read back for its result=.
 * One test per way a session can end (SPEC.md "Session log"), plus the
 * inactivity rules (a slow upload or a slow reader is activity) and the
 * 421s a client is told. Bounded by timeouts, never by sleeps: the test
 * spins the event loop until what it waits for has happened.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
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

#include "balancer/balancer.h"
#include "config/config.h"
#include "core/clients.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/session.h"
#include "core/shm.h"

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
	    "    greeting_timeout: 1s\n"
	    "%s"
	    "    servers:\n"
	    "      - name: s1\n"
	    "        address: 127.0.0.1:%d\n",
	    extra_listener, extra_pool, be_port);
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

	shm_create();
	clients_create(2, 64);
	shm_worker_attach(0);
	clients_attach(0);
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

static void
teardown(void)
{
	session_close_all(&env);
	bal_pool_free(bal[0]);
	event_base_free(base);
	close(be_listen);
	cfg_free(cfg);
}

/* ------------------------------------------------------------ drivers */

/* A client connection handed to a new session; returns our end. */
static int
client_connect(const char *src)
{
	struct sockaddr_in sin, peer;
	socklen_t len = sizeof(peer);
	int port, l = listen_any(&port), c, a, on = 1;

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
	loglen = 0;
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
