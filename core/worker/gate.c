/* SPDX-License-Identifier: MIT */
/*
 * gate: from an admitted session to a greeted one. Pick a server (the
 * balancer over the shared view of health, admin state and counters),
 * connect, write the PROXY header in one write, and hold the client until
 * the backend's first reply line: a refused connect, a close, the greeting
 * timeout or a "421 4.3.x" (smtp/verdict.c judges the line) fails the
 * attempt, and the session tries the next server unseen by the client
 * (SPEC.md "Greeting-gated failover"). Up to 4 KiB of early client bytes
 * are held meanwhile and go out right after the first line. Each function
 * says how it went by its return code; session.c decides what follows.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/shm.h"
#include "core/worker/session_int.h"
#include "smtp/proxy.h"
#include "smtp/reply.h"
#include "smtp/verdict.h"


void
gate_drop_server(struct session *s)
{
	relay_side_close(&s->server);
	if (s->state == SESSION_CONNECTING || s->state == SESSION_GATE) {
		/* What this server said before its first line ended. */
		if (s->client.out != NULL) {
			evbuffer_free(s->client.out);
			s->client.out = NULL;
		}
	}
	if (s->server_counted) {
		shm_server_add(session_server_slot(s), -1);
		s->server_counted = false;
	}
}

/* Build the view the balancer needs from shared memory. */
static int
gate_pick(struct session *s)
{
	const struct cfg_pool *pc = session_pool(s)->cfg;
	struct bal_server view_inline[16] = { 0 }, *view = view_inline;
	bool tried_inline[SESSION_TRIED_BITS], *tried = s->pre->tried_big;
	bool need_active = pc->balance == CFG_BALANCE_LEASTCONN;
	int idx;

	if (pc->nservers > 16 &&
	    (view = calloc(pc->nservers, sizeof(*view))) == NULL)
		return -1;
	if (tried == NULL) {
		tried = tried_inline;
		for (size_t i = 0; i < pc->nservers; i++)
			tried[i] = (s->pre->tried >> i) & 1;
	}
	for (size_t i = 0; i < pc->nservers; i++) {
		unsigned slot = session_pool(s)->server_slot[i];

		view[i].usable = shm_health_state(slot) != SHM_HEALTH_DOWN &&
		    shm_admin_get(slot) == SHM_ADMIN_READY;
		view[i].active = 0;
		if (need_active || pc->servers[i].max_connections > 0)
			view[i].active = shm_server_active(slot);
	}
	idx = bal_pick(s->env->bal[s->listener->cfg->pool], view, tried,
	    &s->peer.sa);
	if (view != view_inline)
		free(view);
	return idx;
}

/* One failed attempt: count it (by its class `reason`), explain it and
 * let the server go. */
static enum gate_status
gate_attempt_failed(struct session *s, enum metrics_reason reason,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static enum gate_status
gate_attempt_failed(struct session *s, enum metrics_reason reason,
    const char *fmt, ...)
{
	const struct cfg_server *srv = &session_pool(s)->cfg->servers[s->server_idx];
	char why[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	shm_server_failure(session_server_slot(s));
	metrics_count_failover(session_server_slot(s), reason);
	if (s->state == SESSION_GATE)
		s->gate_failures++;
	session_add_error(s, "%s/%s: %s", session_pool(s)->cfg->name, srv->name, why);
	log_debug("session: server %s/%s %s: %s sid=%s",
	    session_pool(s)->cfg->name, srv->name, srv->address.text, why,
	    session_sid(s));
	gate_drop_server(s);
	return GATE_FAILED;
}

enum gate_status
gate_connected(struct session *s, bool eager)
{
	const struct cfg_pool *pc = session_pool(s)->cfg;
	struct session_side *sv = &s->server;
	uint8_t hdr[PROXY_HEADER_MAX];
	socklen_t len;
	int64_t now;
	ssize_t w;
	int n = 0, err = 0;

	/* An upstream LOCAL header (or one Postfix could not take) left the
	 * real endpoints in peer/local: v2 says LOCAL, v1 sends those. */
	if (pc->proxy == CFG_PROXY_V2 && s->pre->proxy_local)
		n = proxy_v2_encode_local(hdr, sizeof(hdr));
	else if (pc->proxy == CFG_PROXY_V1)
		n = proxy_v1_encode((char *)hdr, sizeof(hdr), &s->peer.sa,
		    &s->pre->local.sa);
	else if (pc->proxy == CFG_PROXY_V2)
		n = proxy_v2_encode(hdr, sizeof(hdr), &s->peer.sa,
		    &s->pre->local.sa);
	if (n < 0) {
		session_add_error(s, "cannot encode PROXY header");
		gate_drop_server(s);
		return GATE_NONE;
	}
	if (n > 0) {
		/* The header goes out in one write, before any client byte;
		 * its outcome is the connect's. */
		do
			w = send(sv->fd, hdr, (size_t)n, MSG_NOSIGNAL);
		while (w == -1 && errno == EINTR);
		if (w == -1) {
			if (relay_again())
				return GATE_WAIT;	/* still connecting */
			return gate_attempt_failed(s,
			    metrics_connect_reason(errno), "connect: %s",
			    strerror(errno));
		}
		if (w < n && relay_queue(sv, hdr + w, (size_t)(n - w)) == -1)
			return gate_attempt_failed(s, METRICS_OTHER,
			    "connect: %s", strerror(errno));
	} else {
		if (eager)
			return GATE_WAIT;	/* wait for writability */
		len = sizeof(err);
		if (getsockopt(sv->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err != 0)
			return gate_attempt_failed(s,
			    metrics_connect_reason(err), "connect: %s",
			    strerror(err));
	}
	now = net_now_us();
	s->connect_ms = (float)(now - s->pre->t_connect) / 1000.0f;
	metrics_count_connect(session_server_slot(s), now - s->pre->t_connect);
	return GATE_READY;
}

/*
 * The servers a session could not try, and why: for last_error when no
 * usable server is left ("mx1 down, mx2 drained"). "" when none.
 */
static void
gate_skipped(const struct session *s, char *buf, size_t cap)
{
	const struct cfg_pool *pc = session_pool(s)->cfg;
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < pc->nservers && used + 1 < cap; i++) {
		unsigned slot = session_pool(s)->server_slot[i];
		bool tried = s->pre->tried_big != NULL ? s->pre->tried_big[i] :
		    i < SESSION_TRIED_BITS && ((s->pre->tried >> i) & 1);
		const char *why = NULL;
		int n;

		if (tried)
			continue;
		switch (shm_admin_get(slot)) {
		case SHM_ADMIN_DRAIN:
			why = "drained";
			break;
		case SHM_ADMIN_MAINT:
			why = "disabled";
			break;
		default:
			break;
		}
		if (why == NULL && shm_health_state(slot) == SHM_HEALTH_DOWN)
			why = "down";
		else if (why == NULL && pc->servers[i].weight == 0)
			why = "weight 0";
		else if (why == NULL && pc->servers[i].max_connections > 0 &&
		    shm_server_active(slot) >= pc->servers[i].max_connections)
			why = "at max_connections";
		if (why == NULL)
			continue;
		n = snprintf(buf + used, cap - used, "%s%s %s",
		    used > 0 ? ", " : "", pc->servers[i].name, why);
		if (n < 0 || (size_t)n >= cap - used)
			break;
		used += (size_t)n;
	}
}

enum gate_status
gate_connect(struct session *s)
{
	const struct cfg_pool *pc = session_pool(s)->cfg;
	const struct cfg_server *srv;
	int fd, idx, on = 1, err, rcvbuf = SESSION_SERVER_RCVBUF;

	if (s->attempts >= 1 + pc->retries)
		return GATE_NONE;
	idx = gate_pick(s);
	if (idx < 0) {
		char skipped[300];

		gate_skipped(s, skipped, sizeof(skipped));
		if (s->attempts == 0 || skipped[0] != '\0')
			session_add_error(s, "%s usable server in pool %s%s%s%s",
			    s->attempts == 0 ? "no" : "no other", pc->name,
			    skipped[0] != '\0' ? " (" : "", skipped,
			    skipped[0] != '\0' ? ")" : "");
		return GATE_NONE;
	}
	if (s->pre->tried_big != NULL)
		s->pre->tried_big[idx] = true;
	else
		s->pre->tried |= (uint64_t)1 << idx;
	s->attempts++;
	s->server_idx = idx;
	srv = &pc->servers[idx];
	shm_server_add(session_server_slot(s), +1);
	s->server_counted = true;
	s->pre->t_connect = net_now_us();

	fd = socket(srv->address.ss.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		err = errno;
		session_add_error(s, "socket: %s", strerror(err));
		log_warnx("session: socket: %s sid=%s", strerror(err),
		    session_sid(s));
		gate_drop_server(s);
		/* Short of descriptors is overload, not a missing backend. */
		return err == EMFILE || err == ENFILE || err == ENOBUFS ||
		    err == ENOMEM ? GATE_NOFD : GATE_NONE;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	/* Only replies flow from the server (bodies go the other way): a
	 * small receive buffer costs no throughput and bounds what a client
	 * that does not read them pins in the kernel. Before connect(2), for
	 * the window it announces. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (connect(fd, (const struct sockaddr *)&srv->address.ss,
	    srv->address.len) == -1 && errno != EINPROGRESS) {
		err = errno;
		close(fd);
		return gate_attempt_failed(s, metrics_connect_reason(err),
		    "connect: %s", strerror(err));
	}
	/* connect_timeout and greeting_timeout are deadlines, kept by the
	 * session: no inactivity timeout of its own yet. */
	relay_side_init(&s->server, fd, 0);
	/* On loopback or a near network the handshake is often done by now:
	 * try the header at once rather than after a writability event. */
	return gate_connected(s, true);
}

/* The backend spoke before its first line was judged. */
static enum gate_status
gate_read(struct session *s, const char **p, size_t *np)
{
	struct session_side *c = &s->client, *sv = &s->server;
	size_t held = c->out != NULL ? evbuffer_get_length(c->out) : 0;
	struct reply_line line;
	enum verdict_greeting v;
	const char *buf;
	ssize_t n;

	/* Never more than a first line's worth is held back. */
	n = relay_recv(sv->fd, session_scratch, VERDICT_LINE_MAX - held);
	if (n == -1) {
		if (relay_again())
			return GATE_WAIT;
		return gate_attempt_failed(s, METRICS_CLOSED,
		    "%s before greeting", strerror(errno));
	}
	if (held == 0) {
		/* Usually the whole line in one read: judged where it lies. */
		buf = session_scratch;
	} else {
		/* The client's queue holds a part of a line (nothing else
		 * writes there before the gate opens). */
		if (n > 0 && relay_queue(c, session_scratch, (size_t)n) == -1)
			return gate_attempt_failed(s, METRICS_OTHER, "%s",
			    strerror(errno));
		buf = (const char *)evbuffer_pullup(c->out, -1);
		if (buf == NULL)
			return gate_attempt_failed(s, METRICS_OTHER, "%s",
			    strerror(ENOMEM));
	}
	v = verdict_greeting(buf, held + (size_t)n, n == 0, &line);
	switch (v) {
	case VERDICT_GREETING_MORE:
		if (held == 0 && relay_queue(c, session_scratch,
		    (size_t)n) == -1)
			return gate_attempt_failed(s, METRICS_OTHER, "%s",
			    strerror(errno));
		return GATE_WAIT;
	case VERDICT_GREETING_BUSY:
		return gate_attempt_failed(s, METRICS_GREETING_4XX,
		    "greeting %d %s", line.code, line.text);
	case VERDICT_GREETING_CLOSED:
		return gate_attempt_failed(s, METRICS_CLOSED,
		    "connection closed before greeting");
	case VERDICT_GREETING_RELAY:
		break;
	}
	/* Any other first line is the backend's answer to this client. */
	*p = held == 0 ? session_scratch : NULL;
	*np = held == 0 ? (size_t)n : 0;
	return GATE_OPEN;
}

enum gate_status
gate_on_server(struct session *s, short what, const char **p, size_t *n)
{
	struct session_side *sv = &s->server;

	if (s->state == SESSION_CONNECTING)
		return gate_connected(s, false);
	if ((what & EV_WRITE) && relay_flush(sv) == -1)
		return gate_attempt_failed(s, METRICS_CLOSED,
		    "%s before greeting", strerror(errno));
	if (what & EV_READ)
		return gate_read(s, p, n);
	return GATE_WAIT;
}

void
gate_timeout(struct session *s)
{
	if (s->state == SESSION_CONNECTING)
		(void)gate_attempt_failed(s, METRICS_CONNECT_TIMEOUT,
		    "connect: timeout");
	else
		(void)gate_attempt_failed(s, METRICS_GREETING_TIMEOUT,
		    "timeout waiting for greeting");
}

int
gate_hold(struct session *s)
{
	struct session_side *c = &s->client;
	size_t held = s->pre->hold != NULL ? evbuffer_get_length(s->pre->hold) : 0;
	ssize_t n;

	n = relay_recv(c->fd, session_scratch, SESSION_HOLD_MAX - held);
	if (n == -1 && relay_again())
		return 0;
	if (n <= 0) {
		/* Gone before the backend greeted it: nothing to pass on. */
		c->eof = n == 0;
		c->err = (short)(n == 0 ? 0 : errno);
		return -1;
	}
	c->active_us = relay_now_us();
	if ((s->pre->hold == NULL && (s->pre->hold = evbuffer_new()) == NULL) ||
	    evbuffer_add(s->pre->hold, session_scratch, (size_t)n) == -1) {
		c->err = ENOMEM;
		return -1;
	}
	return 0;
}
