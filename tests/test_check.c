/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for smtp/check.c: each scenario runs a real check against a
 * tiny scripted SMTP server on loopback, both driven by one event_base and
 * bounded by timeouts. The server records what the check sent and how it
 * closed (FIN or RST).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>

#include "smtp/check.h"
#include "smtp/proxy.h"

#define CLOSE "<close>"		/* a reply that is a hang-up */
#define HINT " (does the backend expect a PROXY header?)"
#define EHLO_250 "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
#define BYE_221 "221 2.0.0 Bye\r\n"
#define GREET "220 mx.test ESMTP\r\n"

struct script {
	const char *name;
	int family;			/* AF_INET, AF_INET6; 0: nothing listens */
	enum check_proxy proxy;
	bool dialog;
	unsigned timeout_ms;
	const char *greet;		/* at accept; NULL: silence; CLOSE */
	const char *greet_late;		/* 50 ms after accept */
	bool header_expected;		/* the server reads a PROXY header */
	const char *proxy_reply;	/* to a "PROXY " line it did not expect */
	const char *ehlo_reply;		/* NULL: silence; CLOSE */
	const char *quit_reply;
	/* expectations */
	bool ok;
	const char *reason;
	const char *rx;			/* after the header; NULL: not checked */
};

struct srv {
	const struct script *sc;
	struct event_base *base;
	int lfd, cfd;
	struct event *ev_accept, *ev_conn, *ev_late;
	struct sockaddr_storage addr;	/* where it listens */
	socklen_t addrlen;
	char rx[4096];
	size_t rx_len, done_len;	/* bytes received / handled */
	size_t header_len;
	bool accepted, late_sent, pregreet, eof, reset, hung_up;
	char want_v1[160];		/* the v1 header for this connection */
};

struct result {
	bool called;
	int calls;
	bool ok;
	char reason[512];
	double elapsed_ms;
};

struct harness {
	struct event_base *base;
	struct srv srv;
	struct result res;
	struct check *check;
	struct event *ev_guard;
	bool free_in_cb;
	bool expect_conn;		/* wait for the server to see the close */
};

static void
harness_maybe_stop(struct harness *h)
{
	struct srv *s = &h->srv;

	if (!h->res.called)
		return;
	/* Wait for the server to see how the check closed, too. */
	if (!h->expect_conn || (s->accepted && s->cfd == -1))
		event_base_loopbreak(h->base);
}

static void
srv_send(struct srv *s, const char *text)
{
	if (strcmp(text, CLOSE) == 0) {
		event_del(s->ev_conn);
		close(s->cfd);
		s->cfd = -1;
		s->hung_up = true;
		return;
	}
	ck_assert_int_eq(send(s->cfd, text, strlen(text), MSG_NOSIGNAL),
	    (ssize_t)strlen(text));
}

/* Answer each complete command line, as the script says. */
static void
srv_handle_lines(struct srv *s)
{
	const struct script *sc = s->sc;

	if (sc->header_expected && s->header_len == 0) {
		struct proxy_info info;
		enum proxy_result r = proxy_decode((uint8_t *)s->rx, s->rx_len,
		    &info);

		if (r == PROXY_NEED_MORE)
			return;
		ck_assert_msg(r == PROXY_OK, "%s: header %s", sc->name,
		    proxy_result_names[r]);
		s->header_len = s->done_len = info.header_len;
	}
	while (s->cfd != -1) {
		char *p = s->rx + s->done_len;
		char *lf = memchr(p, '\n', s->rx_len - s->done_len);
		const char *reply = NULL;

		if (lf == NULL)
			return;
		s->done_len = (size_t)(lf - s->rx) + 1;
		if (strncmp(p, "PROXY ", 6) == 0)
			reply = sc->proxy_reply;
		else if (strncmp(p, "EHLO ", 5) == 0)
			reply = sc->ehlo_reply;
		else if (strncmp(p, "QUIT", 4) == 0)
			reply = sc->quit_reply;
		if (reply != NULL)
			srv_send(s, reply);
	}
}

static void
srv_on_conn(evutil_socket_t fd, short what, void *arg)
{
	struct harness *h = arg;
	struct srv *s = &h->srv;
	ssize_t n = recv(s->cfd, s->rx + s->rx_len,
	    sizeof(s->rx) - 1 - s->rx_len, 0);

	if (n > 0) {
		s->rx_len += (size_t)n;
		s->rx[s->rx_len] = '\0';
		srv_handle_lines(s);
		/* The header is not speaking; anything after it is. */
		if (s->sc->greet_late != NULL && !s->late_sent &&
		    (!s->sc->header_expected || s->header_len != 0) &&
		    s->rx_len > s->header_len)
			s->pregreet = true;
		harness_maybe_stop(h);
		return;
	}
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == 0)
		s->eof = true;
	else
		s->reset = true;
	event_del(s->ev_conn);
	close(s->cfd);
	s->cfd = -1;
	harness_maybe_stop(h);
}

static void
srv_on_late(evutil_socket_t fd, short what, void *arg)
{
	struct harness *h = arg;
	struct srv *s = &h->srv;

	if (s->cfd == -1)
		return;
	s->late_sent = true;
	srv_send(s, s->sc->greet_late);
	harness_maybe_stop(h);
}

/* The header a v1 check must send: its source, then this server. */
static void
srv_note_v1(struct srv *s)
{
	struct sockaddr_storage src, dst;
	socklen_t slen = sizeof(src), dlen = sizeof(dst);
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
	unsigned sport, dport;

	ck_assert_int_eq(getpeername(s->cfd, (struct sockaddr *)&src, &slen),
	    0);
	ck_assert_int_eq(getsockname(s->cfd, (struct sockaddr *)&dst, &dlen),
	    0);
	if (src.ss_family == AF_INET) {
		struct sockaddr_in *x = (struct sockaddr_in *)&src;
		struct sockaddr_in *y = (struct sockaddr_in *)&dst;

		inet_ntop(AF_INET, &x->sin_addr, a, sizeof(a));
		inet_ntop(AF_INET, &y->sin_addr, b, sizeof(b));
		sport = ntohs(x->sin_port);
		dport = ntohs(y->sin_port);
	} else {
		struct sockaddr_in6 *x = (struct sockaddr_in6 *)&src;
		struct sockaddr_in6 *y = (struct sockaddr_in6 *)&dst;

		inet_ntop(AF_INET6, &x->sin6_addr, a, sizeof(a));
		inet_ntop(AF_INET6, &y->sin6_addr, b, sizeof(b));
		sport = ntohs(x->sin6_port);
		dport = ntohs(y->sin6_port);
	}
	snprintf(s->want_v1, sizeof(s->want_v1), "PROXY %s %s %s %u %u\r\n",
	    src.ss_family == AF_INET ? "TCP4" : "TCP6", a, b, sport, dport);
}

static void
srv_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct harness *h = arg;
	struct srv *s = &h->srv;
	int cfd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (cfd == -1)
		return;
	ck_assert_int_eq(s->cfd, -1);	/* one connection per check */
	ck_assert(!s->accepted);
	s->cfd = cfd;
	s->accepted = true;
	srv_note_v1(s);
	s->ev_conn = event_new(h->base, cfd, EV_READ | EV_PERSIST, srv_on_conn,
	    h);
	event_add(s->ev_conn, NULL);
	if (s->sc->greet != NULL)
		srv_send(s, s->sc->greet);
	if (s->sc->greet_late != NULL) {
		struct timeval tv = { 0, 50 * 1000 };

		s->ev_late = evtimer_new(h->base, srv_on_late, h);
		evtimer_add(s->ev_late, &tv);
	}
	harness_maybe_stop(h);
}

/* Listen on loopback; false when the family is not available here. */
static bool
srv_listen(struct harness *h, const struct script *sc)
{
	struct srv *s = &h->srv;

	memset(s, 0, sizeof(*s));
	s->sc = sc;
	s->lfd = s->cfd = -1;
	memset(&s->addr, 0, sizeof(s->addr));
	if (sc->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&s->addr;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		s->addrlen = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&s->addr;

		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		s->addrlen = sizeof(*sin);
	}
	s->lfd = socket(s->addr.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd == -1)
		return false;
	if (bind(s->lfd, (struct sockaddr *)&s->addr, s->addrlen) == -1) {
		close(s->lfd);
		return false;
	}
	ck_assert_int_eq(getsockname(s->lfd, (struct sockaddr *)&s->addr,
	    &s->addrlen), 0);
	if (sc->family == 0) {
		/* A port that was just free: nothing listens there now. */
		close(s->lfd);
		s->lfd = -1;
		return true;
	}
	ck_assert_int_eq(listen(s->lfd, 8), 0);
	s->ev_accept = event_new(h->base, s->lfd, EV_READ | EV_PERSIST,
	    srv_on_accept, h);
	event_add(s->ev_accept, NULL);
	return true;
}

static void
srv_close(struct srv *s)
{
	if (s->ev_conn != NULL)
		event_free(s->ev_conn);
	if (s->ev_late != NULL)
		event_free(s->ev_late);
	if (s->ev_accept != NULL)
		event_free(s->ev_accept);
	if (s->cfd != -1)
		close(s->cfd);
	if (s->lfd != -1)
		close(s->lfd);
}

static void
harness_on_done(bool ok, const char *reason, double elapsed_ms, void *arg)
{
	struct harness *h = arg;

	h->res.calls++;
	h->res.called = true;
	h->res.ok = ok;
	snprintf(h->res.reason, sizeof(h->res.reason), "%s", reason);
	h->res.elapsed_ms = elapsed_ms;
	if (h->free_in_cb) {
		check_free(h->check);
		h->check = NULL;
	}
	harness_maybe_stop(h);
}

static void
harness_on_guard(evutil_socket_t fd, short what, void *arg)
{
	struct harness *h = arg;

	event_base_loopbreak(h->base);
}

/* Run one check against the scripted server; false: family unavailable. */
static bool
harness_run(struct harness *h, const struct script *sc)
{
	struct check_params p;
	struct timeval guard = { 5, 0 };

	memset(h, 0, sizeof(*h));
	h->base = event_base_new();
	ck_assert_ptr_nonnull(h->base);
	if (!srv_listen(h, sc)) {
		event_base_free(h->base);
		return false;
	}
	memset(&p, 0, sizeof(p));
	p.addr = (struct sockaddr *)&h->srv.addr;
	p.addrlen = h->srv.addrlen;
	p.proxy = sc->proxy;
	p.dialog = sc->dialog;
	p.helo = "check.example";
	p.timeout_ms = sc->timeout_ms != 0 ? sc->timeout_ms : 2000;
	h->free_in_cb = true;
	h->expect_conn = sc->family != 0;
	h->check = check_start(h->base, &p, harness_on_done, h);
	ck_assert_ptr_nonnull(h->check);
	/* Never from inside check_start. */
	ck_assert(!h->res.called);
	h->ev_guard = evtimer_new(h->base, harness_on_guard, h);
	evtimer_add(h->ev_guard, &guard);
	event_base_dispatch(h->base);
	return true;
}

static void
harness_free(struct harness *h)
{
	check_free(h->check);
	srv_close(&h->srv);
	event_free(h->ev_guard);
	event_base_free(h->base);
}

static const struct script scripts[] = {
	{ .name = "plain", .family = AF_INET, .dialog = true,
	  .greet = GREET, .ehlo_reply = EHLO_250, .quit_reply = BYE_221,
	  .ok = true, .reason = "EHLO ok",
	  .rx = "EHLO check.example\r\nQUIT\r\n" },
	/* postscreen: teaser at once, the rest later; nothing said before. */
	{ .name = "teaser v2", .family = AF_INET, .dialog = true,
	  .proxy = CHECK_PROXY_V2, .header_expected = true,
	  .greet = "220-mx.test ESMTP\r\n", .greet_late = GREET,
	  .ehlo_reply = EHLO_250, .quit_reply = BYE_221,
	  .ok = true, .reason = "EHLO ok",
	  .rx = "EHLO check.example\r\nQUIT\r\n" },
	{ .name = "v1", .family = AF_INET, .dialog = true,
	  .proxy = CHECK_PROXY_V1, .header_expected = true,
	  .greet = GREET, .ehlo_reply = EHLO_250, .quit_reply = BYE_221,
	  .ok = true, .reason = "EHLO ok",
	  .rx = "EHLO check.example\r\nQUIT\r\n" },
	{ .name = "v1 ipv6", .family = AF_INET6, .dialog = true,
	  .proxy = CHECK_PROXY_V1, .header_expected = true,
	  .greet = GREET, .ehlo_reply = EHLO_250, .quit_reply = BYE_221,
	  .ok = true, .reason = "EHLO ok",
	  .rx = "EHLO check.example\r\nQUIT\r\n" },
	{ .name = "connect", .family = AF_INET,
	  .ok = true, .reason = "connect ok", .rx = "" },
	{ .name = "connect v2", .family = AF_INET, .proxy = CHECK_PROXY_V2,
	  .header_expected = true, .ok = true, .reason = "connect ok",
	  .rx = "" },
	{ .name = "connect v1", .family = AF_INET, .proxy = CHECK_PROXY_V1,
	  .header_expected = true, .ok = true, .reason = "connect ok",
	  .rx = "" },
	{ .name = "refused", .family = 0, .dialog = true,
	  .reason = "connect: connection refused" },
	{ .name = "refused connect", .family = 0,
	  .reason = "connect: connection refused" },
	{ .name = "silent", .family = AF_INET, .dialog = true,
	  .timeout_ms = 150, .reason = "timeout waiting for greeting" HINT,
	  .rx = "" },
	{ .name = "silent v2", .family = AF_INET, .dialog = true,
	  .proxy = CHECK_PROXY_V2, .header_expected = true, .timeout_ms = 150,
	  .reason = "timeout waiting for greeting", .rx = "" },
	{ .name = "teaser only", .family = AF_INET, .dialog = true,
	  .timeout_ms = 150, .greet = "220-mx.test ESMTP\r\n",
	  .reason = "timeout waiting for greeting", .rx = "" },
	{ .name = "busy", .family = AF_INET, .dialog = true,
	  .proxy = CHECK_PROXY_V2, .header_expected = true,
	  .greet = "421 4.3.2 All server ports are busy\r\n",
	  .reason = "greeting 421 4.3.2 All server ports are busy", .rx = "" },
	{ .name = "rejected", .family = AF_INET, .dialog = true,
	  .greet = "554 5.7.1 No SMTP service here\r\n",
	  .reason = "greeting 554 5.7.1 No SMTP service here", .rx = "" },
	{ .name = "rejected multi-line", .family = AF_INET, .dialog = true,
	  .greet = "554-5.7.1 Go away\r\n554 5.7.1 Really\r\n",
	  .reason = "greeting 554 5.7.1 Go away", .rx = "" },
	{ .name = "wants header", .family = AF_INET, .dialog = true,
	  .greet = "421 4.3.0 mx.test Error: queue file write error\r\n",
	  .reason = "greeting 421 4.3.0 mx.test Error: queue file write error"
	  HINT, .rx = "" },
	{ .name = "header not expected", .family = AF_INET, .dialog = true,
	  .proxy = CHECK_PROXY_V1, .greet = GREET,
	  .proxy_reply = "500 5.5.2 Error: command not recognized\r\n",
	  .reason = "EHLO answered 500 5.5.2 Error: command not recognized"
	  HINT },
	{ .name = "header not expected, old postfix", .family = AF_INET,
	  .dialog = true, .proxy = CHECK_PROXY_V1, .greet = GREET,
	  .proxy_reply = "502 5.5.2 Error: command not recognized\r\n",
	  .reason = "EHLO answered 502 5.5.2 Error: command not recognized"
	  HINT },
	{ .name = "ehlo 502", .family = AF_INET, .dialog = true,
	  .greet = GREET,
	  .ehlo_reply = "502 5.5.2 Error: command not implemented\r\n",
	  .reason = "EHLO answered 502 5.5.2 Error: command not implemented",
	  .rx = "EHLO check.example\r\n" },
	{ .name = "hang-up", .family = AF_INET, .dialog = true,
	  .greet = CLOSE, .reason = "connection closed before greeting" HINT },
	{ .name = "hang-up v2", .family = AF_INET, .dialog = true,
	  .proxy = CHECK_PROXY_V2, .greet = CLOSE,
	  .reason = "connection closed before greeting" },
	{ .name = "hang-up after teaser", .family = AF_INET, .dialog = true,
	  .greet = "220-mx.test\r\n", .greet_late = CLOSE,
	  .reason = "connection closed during greeting" },
	{ .name = "hang-up after EHLO", .family = AF_INET, .dialog = true,
	  .greet = GREET, .ehlo_reply = CLOSE,
	  .reason = "connection closed after EHLO" },
	{ .name = "ehlo silence", .family = AF_INET, .dialog = true,
	  .timeout_ms = 150, .greet = GREET,
	  .reason = "timeout waiting for EHLO reply",
	  .rx = "EHLO check.example\r\n" },
	{ .name = "quit 500", .family = AF_INET, .dialog = true,
	  .greet = GREET, .ehlo_reply = EHLO_250,
	  .quit_reply = "500 5.5.1 Nope\x01\r\n",
	  .reason = "QUIT answered 500 5.5.1 Nope?",
	  .rx = "EHLO check.example\r\nQUIT\r\n" },
	{ .name = "quit silence", .family = AF_INET, .dialog = true,
	  .timeout_ms = 150, .greet = GREET, .ehlo_reply = EHLO_250,
	  .reason = "timeout waiting for QUIT reply",
	  .rx = "EHLO check.example\r\nQUIT\r\n" },
	{ .name = "junk", .family = AF_INET, .dialog = true,
	  .greet = "hello\r\n", .reason = "bad reply: hello", .rx = "" },
	{ .name = "junk, no newline", .family = AF_INET, .dialog = true,
	  .greet = "SSH-2.0-OpenSSH_9.2\"\x7f", .rx = "",
	  .reason = "bad reply: SSH-2.0-OpenSSH_9.2\\\"\\x7f" },
	{ .name = "bad ehlo reply", .family = AF_INET, .dialog = true,
	  .greet = GREET, .ehlo_reply = "250-a\r\n251 b\r\n",
	  .reason = "bad reply: 251 b" },
};

START_TEST(test_check_dialog)
{
	const struct script *sc = &scripts[_i];
	struct harness h;
	struct srv *s = &h.srv;

	if (!harness_run(&h, sc)) {
		fprintf(stderr, "%s: family not available, skipped\n", sc->name);
		return;
	}
	ck_assert_msg(h.res.called, "%s: no result within 5 s", sc->name);
	ck_assert_int_eq(h.res.calls, 1);
	ck_assert_msg(h.res.ok == sc->ok, "%s: ok=%d (%s)", sc->name,
	    h.res.ok, h.res.reason);
	ck_assert_str_eq(h.res.reason, sc->reason);
	ck_assert(h.res.elapsed_ms >= 0);
	if (sc->timeout_ms != 0) {
		/* libevent's coarse monotonic clock ticks in ~4 ms steps. */
		ck_assert_double_ge(h.res.elapsed_ms, sc->timeout_ms - 10);
		ck_assert_double_lt(h.res.elapsed_ms, sc->timeout_ms + 1000);
	}
	/* Never a word before the end of the greeting. */
	ck_assert_msg(!s->pregreet, "%s: spoke before the greeting", sc->name);
	if (sc->family == 0)
		goto out;
	/* The check closed with a FIN, never a reset. */
	ck_assert_msg(!s->reset, "%s: connection reset", sc->name);
	if (!s->hung_up)
		ck_assert_msg(s->eof, "%s: no FIN from the check", sc->name);

	if (sc->proxy == CHECK_PROXY_V2 && sc->header_expected) {
		uint8_t local[16];

		ck_assert_int_eq(proxy_v2_encode_local(local, sizeof(local)),
		    16);
		ck_assert_uint_eq(s->header_len, 16);
		ck_assert_mem_eq(s->rx, local, 16);
	} else if (sc->proxy == CHECK_PROXY_V1) {
		ck_assert_uint_ge(s->rx_len, strlen(s->want_v1));
		ck_assert_mem_eq(s->rx, s->want_v1, strlen(s->want_v1));
		if (sc->header_expected)
			ck_assert_uint_eq(s->header_len, strlen(s->want_v1));
	}
	if (sc->rx != NULL) {
		ck_assert_str_eq(s->rx + s->header_len, sc->rx);
	}
out:
	harness_free(&h);
}
END_TEST

static void
cancel_on_done(bool ok, const char *reason, double elapsed_ms, void *arg)
{
	struct harness *h = arg;

	h->res.calls++;
}

static void
cancel_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct harness *h = arg;

	check_free(h->check);
	h->check = NULL;
	h->res.called = true;	/* lets the harness stop on the server's EOF */
	harness_maybe_stop(h);
}

/* check_free() during the greeting wait: no callback, a clean close. */
START_TEST(test_check_cancel)
{
	static const struct script sc = { .name = "cancel",
	    .family = AF_INET, .dialog = true, .greet = "220-wait\r\n" };
	struct harness h;
	struct check_params p;
	struct timeval tv = { 0, 30 * 1000 }, guard = { 5, 0 };
	struct event *ev;

	memset(&h, 0, sizeof(h));
	h.base = event_base_new();
	ck_assert(srv_listen(&h, &sc));
	memset(&p, 0, sizeof(p));
	p.addr = (struct sockaddr *)&h.srv.addr;
	p.addrlen = h.srv.addrlen;
	p.dialog = true;
	p.helo = "check.example";
	p.timeout_ms = 2000;
	h.expect_conn = true;
	h.check = check_start(h.base, &p, cancel_on_done, &h);
	ck_assert_ptr_nonnull(h.check);
	ev = evtimer_new(h.base, cancel_on_timer, &h);
	evtimer_add(ev, &tv);
	h.ev_guard = evtimer_new(h.base, harness_on_guard, &h);
	evtimer_add(h.ev_guard, &guard);
	event_base_dispatch(h.base);
	ck_assert_int_eq(h.res.calls, 0);
	ck_assert(h.srv.eof);
	ck_assert(!h.srv.reset);
	event_free(ev);
	harness_free(&h);
}
END_TEST

/* A helo with a line break would smuggle a command: refused, async. */
START_TEST(test_check_bad_helo)
{
	static const struct script sc = { .name = "helo", .family = AF_INET };
	struct harness h;
	struct check_params p;
	struct timeval guard = { 5, 0 };

	memset(&h, 0, sizeof(h));
	h.base = event_base_new();
	ck_assert(srv_listen(&h, &sc));
	memset(&p, 0, sizeof(p));
	p.addr = (struct sockaddr *)&h.srv.addr;
	p.addrlen = h.srv.addrlen;
	p.dialog = true;
	p.helo = "x\r\nMAIL FROM:<>";
	p.timeout_ms = 2000;
	h.free_in_cb = true;
	h.check = check_start(h.base, &p, harness_on_done, &h);
	ck_assert_ptr_nonnull(h.check);
	ck_assert(!h.res.called);
	h.ev_guard = evtimer_new(h.base, harness_on_guard, &h);
	evtimer_add(h.ev_guard, &guard);
	event_base_dispatch(h.base);
	ck_assert_int_eq(h.res.calls, 1);
	ck_assert(!h.res.ok);
	ck_assert_str_eq(h.res.reason, "invalid helo name");
	harness_free(&h);
}
END_TEST

#define NVEC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *
check_suite(void)
{
	Suite *s = suite_create("check");
	TCase *tc;

	tc = tcase_create("check_start");
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_check_dialog, 0, NVEC(scripts));
	tcase_add_test(tc, test_check_bad_helo);
	suite_add_tcase(s, tc);

	tc = tcase_create("check_free");
	tcase_add_test(tc, test_check_cancel);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(check_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
