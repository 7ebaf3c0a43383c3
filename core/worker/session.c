/* SPDX-License-Identifier: MIT */
/*
 * session: the life of one client connection, and the one place that
 * decides it. A table of phases (header, connecting, gate, relay, closing)
 * gives each its entry, its handlers for either socket and for its
 * deadline, and the events it waits for; session_goto() is the only place
 * the phase changes and session_finalize() the only way a session ends
 * (its verdict, from smtp/verdict.c, its 421 if any, the linger or the
 * free). The header reader (upstream.c), the gate (gate.c) and the pump
 * (relay.c) act on the sockets and report by return codes and side flags;
 * none of them calls back here. Admission (max_connections and the
 * per-client limit) and the log line live here too.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/shm.h"
#include "core/worker/admission.h"
#include "core/worker/session_int.h"
#include "smtp/verdict.h"

/* last_error keeps at most this much (several failed attempts). */
#define SESSION_ERROR_MAX	900
/* Rejection lines (bad or untrusted upstream headers) a worker logs per
 * second; the rest are counted and reported in one line. */
#define SESSION_REJECTS_PER_S	10

TAILQ_HEAD(session_list, session);
static struct session_list sessions = TAILQ_HEAD_INITIALIZER(sessions);

/* Sessions this worker started: each one's number in its sid. */
static uint32_t session_count;
static pid_t session_pid;

const char *
session_sid(const struct session *s)
{
	static char buf[32];

	if (session_pid == 0)
		session_pid = getpid();
	snprintf(buf, sizeof(buf), "%lx.%" PRIx32, (unsigned long)session_pid,
	    s->sid);
	return buf;
}

/* Every read lands here first; bytes leave it before the handler returns. */
char session_scratch[SESSION_READ_MAX];

/*
 * Phases with an absolute deadline and the socket whose timer carries it:
 * the client's while the header is read and while a refused client
 * lingers (or the server has hung up on it), the server's while it is
 * connected and awaited.
 */
struct session_side *
session_deadline_side(const struct session *s)
{
	if (s->deadline_us == 0)
		return NULL;
	return (struct session_side *)(s->state == SESSION_CONNECTING ||
	    s->state == SESSION_GATE ? &s->server : &s->client);
}

void
session_deadline(struct session *s, int64_t from_us, unsigned ms)
{
	struct session_side *d;

	s->deadline_us = ms > 0 ? from_us + (int64_t)ms * 1000 : 0;
	if ((d = session_deadline_side(s)) != NULL)
		d->retime = true;
}

/* The fine clock: libevent's timer fires by it. */
static bool
session_deadline_passed(const struct session *s)
{
	return s->deadline_us != 0 && net_now_us() >= s->deadline_us;
}

unsigned
session_server_slot(const struct session *s)
{
	return session_pool(s)->server_slot[s->server_idx];
}

/* Add one explanation to last_error ("; " between several). */
void
session_add_error(struct session *s, const char *fmt, ...)
{
	char add[512], *e;
	size_t old = s->last_error != NULL ? strlen(s->last_error) : 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(add, sizeof(add), fmt, ap);
	va_end(ap);
	if (old >= SESSION_ERROR_MAX)
		return;
	if (asprintf(&e, "%s%s%s", old > 0 ? s->last_error : "",
	    old > 0 ? "; " : "", add) == -1)
		return;		/* out of memory: keep what there is */
	if (strlen(e) > SESSION_ERROR_MAX)
		e[SESSION_ERROR_MAX] = '\0';
	free(s->last_error);
	s->last_error = e;
}

/* The end of a second in which rejection lines were left out. */
static void
session_on_rejects_report(evutil_socket_t fd, short what, void *arg)
{
	struct session_rejects *r = &((struct session_env *)arg)->rejects;

	/* That second is over: the next rejection opens the next one
	 * (libevent's clock may run a little ahead of ours). */
	r->report_armed = false;
	r->window_us = 0;
	r->logged = 0;
	if (r->dropped == 0)
		return;
	log_info("session: %u more rejected PROXY connection(s) not logged "
	    "(at most %d lines a second per worker)", r->dropped,
	    SESSION_REJECTS_PER_S);
	r->dropped = 0;
}

/*
 * May one more rejection line be logged? At most SESSION_REJECTS_PER_S in
 * a second; those left out are reported in one line when that second
 * ends, so a flood costs at most 11 lines a second per worker.
 */
static bool
session_reject_loggable(struct session_env *env)
{
	struct session_rejects *r = &env->rejects;
	int64_t now = net_now_us(), left;
	struct timeval tv;

	if (now - r->window_us >= 1000000) {
		r->window_us = now;
		r->logged = 0;
	}
	if (r->logged < SESSION_REJECTS_PER_S) {
		r->logged++;
		return true;
	}
	r->dropped++;
	if (!r->report_armed) {
		left = 1000000 - (now - r->window_us);
		tv.tv_sec = left / 1000000;
		tv.tv_usec = left % 1000000;
		if (event_base_once(env->base, -1, EV_TIMEOUT,
		    session_on_rejects_report, env, &tv) == 0)
			r->report_armed = true;
	}
	return false;
}

static void
session_log(struct session *s)
{
	char client[NET_ADDR_TEXT], server[2 * CFG_NAME_MAX + 2];
	const char *backend = "-";
	const char *dump = s->pre != NULL ? s->pre->dump : NULL;
	const struct cfg_server *srv;
	int64_t duration_us;

	if (s->logged)
		return;
	s->logged = true;
	duration_us = net_now_us() - s->t_start;
	metrics_count_session(s->listener->slot, s->result, s->bytes_in,
	    s->bytes_out, duration_us);
	if (!log_enabled(CFG_LOG_INFO))
		return;
	switch (s->env->rt->cfg->log.sessions) {
	case CFG_LOG_SESSIONS_NONE:
		return;
	case CFG_LOG_SESSIONS_FAILED:
		if (s->result != NULL && strcmp(s->result, "ok") == 0)
			return;
		break;
	default:
		break;
	}
	if (s->result != NULL && (strcmp(s->result, "bad-proxy-header") == 0 ||
	    strcmp(s->result, "untrusted-proxy") == 0) &&
	    !session_reject_loggable(s->env))
		return;
	net_addr_fmt(&s->peer.sa, client, sizeof(client));
	if (s->server_idx >= 0) {
		srv = &session_pool(s)->cfg->servers[s->server_idx];
		snprintf(server, sizeof(server), "%s/%s", session_pool(s)->cfg->name,
		    srv->name);
		backend = srv->address.text;
	} else {
		snprintf(server, sizeof(server), "-");
	}
	if (s->last_error != NULL) {
		/* Quotes inside the value would break key=value parsing. */
		for (char *p = s->last_error; *p; p++)
			if (*p == '"' || *p == '\\' ||
			    (unsigned char)*p < 0x20)
				*p = '\'';
	}
	/* The dump is escaped already (proxy_escape: \\, \" and \xNN). */
	log_info("session client=%s listener=%s server=%s backend=%s proxy=%s"
	    "%s%s attempts=%u connect_ms=%.1f duration_ms=%.0f bytes_in=%llu "
	    "bytes_out=%llu result=%s%s%s%s%s%s sid=%s", client,
	    s->listener->cfg->name, server, backend,
	    cfg_proxy_names[session_pool(s)->cfg->proxy],
	    s->proxy_in != 0 ? " proxy_in=" : "",
	    s->proxy_in == 1 ? "v1" : s->proxy_in == 2 ? "v2" : "",
	    s->attempts, (double)s->connect_ms,
	    (double)duration_us / 1000.0,
	    (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out,
	    s->result, s->last_error != NULL ? " last_error=\"" : "",
	    s->last_error != NULL ? s->last_error : "",
	    s->last_error != NULL && dump != NULL ? "; first bytes: " : "",
	    s->last_error != NULL && dump != NULL ? dump : "",
	    s->last_error != NULL ? "\"" : "", session_sid(s));
}

/* The session stops counting against its listener and client network. */
static void
session_uncount(struct session *s)
{
	admission_release(s->listener, &s->admit);
}

/* The gate opened or the session closes: what led there goes. */
static void
session_pre_free(struct session *s)
{
	struct session_pre *pre = s->pre;

	if (pre == NULL)
		return;
	if (pre->hold != NULL)
		evbuffer_free(pre->hold);
	free(pre->hdr);
	free(pre->tried_big);
	free(pre->dump);
	free(pre);
	s->pre = NULL;
}

static void
session_free(struct session *s)
{
	struct session_env *env = s->env;

	/* Counters and sockets first: whoever reads the log line may rely
	 * on the session no longer counting against any limit. */
	session_uncount(s);
	gate_drop_server(s);
	relay_side_close(&s->client);
	session_log(s);
	session_pre_free(s);
	TAILQ_REMOVE(&sessions, s, entry);
	free(s->last_error);
	free(s);
	env->nsessions--;
	if (env->on_close != NULL)
		env->on_close(env->arg);
}


/* A side went away (EOF when err is 0): remember who was first, and how
 * the dialog stood when the client left. */
static void
session_side_gone(struct session *s, struct session_side *d, int err)
{
	if (s->first_gone != VERDICT_NOBODY)
		return;
	s->first_gone = d == &s->client ? VERDICT_CLIENT : VERDICT_SERVER;
	s->first_clean = err == 0;
	s->first_err = (short)err;
	if (d == &s->client) {
		s->client_quiet = dialog_quiet(&s->dialog);
		s->client_in_message = dialog_in_message(&s->dialog);
	}
}

/* How the session ended (smtp/verdict.c), with what explains it added to
 * last_error. */
static const char *
session_verdict(struct session *s, enum verdict_cause cause, int err)
{
	struct verdict_in in = {
		.cause = cause,
		.err = err,
		.stage = s->state == SESSION_HEADER ? VERDICT_AT_HEADER :
		    s->state == SESSION_RELAY ? VERDICT_RELAYED :
		    VERDICT_AT_GATE,
		.gate_failures = s->gate_failures,
		.dialog = &s->dialog,
		.first_gone = (enum verdict_who)s->first_gone,
		.first_clean = s->first_clean,
		.first_err = s->first_err,
		.client_quiet = s->client_quiet,
		.client_in_message = s->client_in_message,
		.client_writing = s->client.out != NULL || s->client.piped > 0,
		.server_writing = s->server.out != NULL || s->server.piped > 0,
	};
	char why[512];
	const char *result = verdict_result(&in, why, sizeof(why));

	if (why[0] != '\0')
		session_add_error(s, "%s", why);
	return result;
}

/* ------------------------------------------------------------- phases */

struct session_phase {
	const char *name;
	/* Entered through session_goto(), with the bytes that go with the
	 * change: the greeting's first read (relay), the reply (closing). */
	int (*enter)(struct session *s, const char *p, size_t n);
	/* A socket's event; EV_TIMEOUT here is the side's inactivity. */
	int (*on_client)(struct session *s, short what);
	int (*on_server)(struct session *s, short what);
	/* The phase's absolute deadline passed. */
	int (*on_deadline)(struct session *s);
	/* Events a side waits for in this phase. */
	short (*want)(const struct session *s, const struct session_side *d);
};
/* Every handler returns 0 while the session lives, -1 once it is freed
 * (the caller then returns at once). */

static const struct session_phase session_phases[SESSION_CLOSING + 1];

/* EV_CLOSED when the backend reports a peer's FIN with its data. */
static short session_ev_closed = -1;

static void session_cb_client(evutil_socket_t fd, short what, void *arg);
static void session_cb_server(evutil_socket_t fd, short what, void *arg);

/* The only place the phase changes. */
static int
session_goto(struct session *s, enum session_state to, const char *p,
    size_t n)
{
	s->state = (unsigned char)to;
	s->deadline_us = 0;
	return session_phases[to].enter(s, p, n);
}

/* Reading always asks for the FIN too: the same events in every phase,
 * so no phase change costs an epoll_ctl. */
static short
session_rd(void)
{
	return EV_READ | session_ev_closed;
}

static short
session_w(const struct session_side *d)
{
	return d->out != NULL || d->piped > 0 ? EV_WRITE : 0;
}

/* Time left before `d` has been inactive for its whole timeout, or before
 * the phase's deadline when `d` carries it (whichever comes first). */
static struct timeval
session_time_left(const struct session *s, const struct session_side *d)
{
	int64_t now = relay_now_us(), left = INT64_MAX;
	struct timeval tv;

	if (d->timeout_ms > 0)
		left = (int64_t)d->timeout_ms * 1000 - (now - d->active_us);
	if (session_deadline_side(s) == d && s->deadline_us - now < left)
		left = s->deadline_us - now;
	if (left < 1000)
		left = 1000;
	tv.tv_sec = left / 1000000;
	tv.tv_usec = left % 1000000;
	return tv;
}

/*
 * Bring a side's event in line with what the phase waits for. Re-adding
 * costs an epoll_ctl, so it is done only when the events or the timeout
 * changed.
 */
static void
session_arm_side(struct session *s, struct session_side *d,
    event_callback_fn cb)
{
	struct timeval tv;
	bool deadline = session_deadline_side(s) == d;
	short want;

	if (d->fd == -1)
		return;
	want = session_phases[s->state].want(s, d);
	/* A persistent event's timeout restarts with every read: the side
	 * carrying a deadline is re-armed from it each time (a timer update,
	 * no epoll_ctl), so no trickle of bytes moves it. */
	if (want == d->armed && !d->retime && !deadline)
		return;
	/* Reading again after a pause of ours: the pause was not the
	 * peer's inactivity. */
	if ((want & EV_READ) && !(d->armed & EV_READ))
		d->active_us = relay_now_us();
	if (d->armed != 0 && want != d->armed) {
		event_del(&d->ev);
		d->armed = 0;
	}
	d->retime = false;
	if (want == 0)
		return;
	if (d->armed == 0)
		event_assign(&d->ev, s->env->base, d->fd, want | EV_PERSIST, cb,
		    s);
	tv = session_time_left(s, d);
	if (event_add(&d->ev, d->timeout_ms > 0 || deadline ? &tv : NULL) ==
	    -1) {
		log_warnx("session: cannot add event sid=%s", session_sid(s));
		return;
	}
	d->armed = want;
}

static void
session_arm(struct session *s)
{
	if (session_ev_closed == -1)
		session_ev_closed = (event_base_get_features(s->env->base) &
		    EV_FEATURE_EARLY_CLOSE) ? EV_CLOSED : 0;
	session_arm_side(s, &s->client, session_cb_client);
	session_arm_side(s, &s->server, session_cb_server);
}

/* One event of one side, handed to the phase; then the events re-armed
 * unless the session ended. */
static void
session_on_event(struct session *s, struct session_side *d, short what)
{
	const struct session_phase *ph = &session_phases[s->state];
	int rc;

	if ((what & EV_TIMEOUT) && session_deadline_side(s) == d &&
	    session_deadline_passed(s)) {
		rc = ph->on_deadline(s);
	} else if ((what & EV_TIMEOUT) && d->timeout_ms == 0) {
		d->retime = true;	/* a hair early for the deadline */
		rc = 0;
	} else {
		rc = d == &s->client ? ph->on_client(s, what) :
		    ph->on_server(s, what);
	}
	if (rc == 0)
		session_arm(s);
}

static void
session_cb_client(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	session_on_event(s, &s->client, what);
}

static void
session_cb_server(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	session_on_event(s, &s->server, what);
}

/* ---------------------------------------------------------- finalize */

/*
 * The one way a session ends. Decides its result (once), then either
 * frees it or, for a 421, logs it, lets it stop counting against any
 * limit and moves it to the closing linger. Returns -1 when freed, 0 when
 * it lingers.
 */
static int
session_finalize(struct session *s, enum verdict_cause cause, int err)
{
	const char *host = s->env->rt->cfg->hostname;
	char reply[400], ip[NET_ADDR_TEXT];
	bool keep_server = false;
	int n;

	if (s->state == SESSION_CLOSING) {
		session_free(s);	/* logged already */
		return -1;
	}
	if (s->result == NULL)
		s->result = session_verdict(s, cause, err);
	switch (cause) {
	case VERDICT_OVERLOAD:
		n = snprintf(reply, sizeof(reply), "421 4.7.0 %s Too many "
		    "connections, try again later\r\n", host);
		break;
	case VERDICT_CLIENT_LIMIT:
	case VERDICT_CLIENT_RATE:
		net_ip_fmt(&s->peer.sa, ip, sizeof(ip));
		/* Postfix's own words, so operators recognise it. */
		n = snprintf(reply, sizeof(reply), "421 4.7.0 %s Error: too "
		    "many connections from %s\r\n", host, ip);
		break;
	case VERDICT_NO_BACKEND:
		n = snprintf(reply, sizeof(reply), "421 4.3.2 %s Service not "
		    "available, try again later\r\n", host);
		break;
	case VERDICT_DENIED:
		net_ip_fmt(&s->peer.sa, ip, sizeof(ip));
		n = snprintf(reply, sizeof(reply), "554 5.7.1 %s Service "
		    "unavailable; client [%s] blocked\r\n", host, ip);
		break;
	case VERDICT_DENIED_RUNTIME:
		net_ip_fmt(&s->peer.sa, ip, sizeof(ip));
		n = snprintf(reply, sizeof(reply), "421 4.7.1 %s Service "
		    "unavailable; client [%s] blocked, try again later\r\n",
		    host, ip);
		break;
	case VERDICT_CLIENT_TIMEOUT:
		/* Postfix's words again, unless a reply is half written to
		 * the client or the server already said its last word. */
		if (s->client.shut || s->client.out != NULL ||
		    s->client.piped > 0 ||
		    !dialog_server_at_line_start(&s->dialog)) {
			session_free(s);
			return -1;
		}
		n = snprintf(reply, sizeof(reply), "421 4.4.2 %s Error: "
		    "timeout exceeded\r\n", host);
		keep_server = true;
		break;
	default:
		session_free(s);
		return -1;
	}
	if (n >= (int)sizeof(reply))
		n = (int)sizeof(reply) - 1;
	gate_drop_server(s);
	if (!keep_server)
		s->server_idx = -1;	/* "server=-": none was reached */
	/* Our own reply counts as bytes the client got. */
	s->bytes_out += (uint64_t)n;
	session_log(s);
	session_uncount(s);
	session_pre_free(s);
	return session_goto(s, SESSION_CLOSING, reply, (size_t)n);
}

/* ------------------------------------------------------------ header */

static int session_admit_or_end(struct session *s);

static int
header_enter(struct session *s, const char *p, size_t n)
{
	const struct cfg_listener *lc = s->listener->cfg;

	if (!upstream_trusted(lc, &s->peer.sa)) {
		upstream_peek(s);
		return session_finalize(s, VERDICT_UNTRUSTED, 0);
	}
	/* Counted from now, so connections waiting for their header show
	 * and count; the limits are decided once the client is known. */
	admission_hold_listener(s->listener, &s->admit);
	if (upstream_begin(s) == -1)
		return session_finalize(s, VERDICT_OVERLOAD, 0);
	/* proxy_timeout runs from accept: a header sent a byte at a time
	 * gets no more time. */
	relay_set_timeout(&s->client, 0);
	session_deadline(s, s->t_start, lc->proxy_timeout_ms);
	/* A balancer writes its header right after connecting: it is
	 * usually here already, so read before waiting. */
	return session_phases[SESSION_HEADER].on_client(s, EV_READ);
}

static int
header_on_client(struct session *s, short what)
{
	int err = 0;

	switch (upstream_read(s, &err)) {
	case UPSTREAM_MORE:
		return 0;
	case UPSTREAM_GONE:
		session_side_gone(s, &s->client, err);
		return session_finalize(s, VERDICT_CLIENT_GONE, err);
	case UPSTREAM_BAD:
		return session_finalize(s, VERDICT_BAD_PROXY, 0);
	case UPSTREAM_NOMEM:
		return session_finalize(s, VERDICT_OVERLOAD, 0);
	case UPSTREAM_DONE:
		break;
	}
	relay_set_timeout(&s->client, s->listener->cfg->client_timeout_ms);
	return session_admit_or_end(s);
}

static int
header_on_deadline(struct session *s)
{
	upstream_timeout(s);
	return session_finalize(s, VERDICT_BAD_PROXY, 0);
}

static int
none_on_event(struct session *s, short what)
{
	return 0;	/* no such socket in this phase */
}

static short
header_want(const struct session *s, const struct session_side *d)
{
	return d == &s->client ? session_rd() : 0;
}

/* ---------------------------------------------------------- the gate */

/* Where the gate's report leads. */
static int
session_gate_next(struct session *s, enum gate_status g, const char *p,
    size_t n)
{
	switch (g) {
	case GATE_WAIT:
		return 0;
	case GATE_READY:
		/* Implicit TLS: the client speaks first, nothing to gate. */
		return session_goto(s, s->listener->cfg->mode == CFG_MODE_TLS ?
		    SESSION_RELAY : SESSION_GATE, NULL, 0);
	case GATE_OPEN:
		return session_goto(s, SESSION_RELAY, p, n);
	case GATE_FAILED:
		return session_goto(s, SESSION_CONNECTING, NULL, 0);
	case GATE_NONE:
		return session_finalize(s, VERDICT_NO_BACKEND, 0);
	case GATE_NOFD:
		return session_finalize(s, VERDICT_OVERLOAD, 0);
	}
	return 0;
}

/* The next attempt: each connect within connect_timeout. */
static int
connect_enter(struct session *s, const char *p, size_t n)
{
	enum gate_status g;

	while ((g = gate_connect(s)) == GATE_FAILED)
		;
	if (g == GATE_WAIT) {
		session_deadline(s, s->pre->t_connect,
		    session_pool(s)->cfg->connect_timeout_ms);
		return 0;
	}
	return session_gate_next(s, g, NULL, 0);
}

/* The first line is due greeting_timeout after the connect, however
 * slowly it trickles in. */
static int
gate_enter(struct session *s, const char *p, size_t n)
{
	session_deadline(s, net_now_us(), session_pool(s)->cfg->greeting_timeout_ms);
	return 0;
}

/* Early client bytes are held (at most 4 KiB) until the gate opens. */
static int
gate_on_client_ev(struct session *s, short what)
{
	struct session_side *c = &s->client;

	if (what & EV_TIMEOUT) {
		if (relay_expired(s, c))
			return session_finalize(s, VERDICT_CLIENT_TIMEOUT, 0);
		return 0;
	}
	if (gate_hold(s) == -1) {
		session_side_gone(s, c, c->err);
		return session_finalize(s, VERDICT_CLIENT_GONE, c->err);
	}
	return 0;
}

static int
gate_on_server_ev(struct session *s, short what)
{
	const char *p = NULL;
	size_t n = 0;
	enum gate_status g = gate_on_server(s, what, &p, &n);

	return session_gate_next(s, g, p, n);
}

static int
gate_on_deadline(struct session *s)
{
	gate_timeout(s);
	return session_goto(s, SESSION_CONNECTING, NULL, 0);
}

static short
gate_want(const struct session *s, const struct session_side *d)
{
	if (d == &s->client)	/* holding early bytes, up to the limit */
		return (s->pre->hold == NULL || evbuffer_get_length(s->pre->hold) <
		    SESSION_HOLD_MAX) ? session_rd() : 0;
	if (s->state == SESSION_CONNECTING)
		return EV_WRITE;
	return session_rd() | session_w(d);
}

/* ------------------------------------------------------------- relay */

/* What the pump reported, by the sides' flags: the one place that says
 * who left and whether the session is over. */
static int
session_relay_check(struct session *s, int rc)
{
	struct session_side *c = &s->client, *sv = &s->server;

	if (c->err != 0) {
		session_side_gone(s, c, c->err);
		return session_finalize(s, VERDICT_CLIENT_GONE, c->err);
	}
	if (sv->err != 0) {
		session_side_gone(s, sv, sv->err);
		return session_finalize(s, VERDICT_SERVER_GONE, sv->err);
	}
	if (c->eof)
		session_side_gone(s, c, 0);
	if (sv->eof)
		session_side_gone(s, sv, 0);
	if (rc == 1)
		return session_finalize(s, VERDICT_FINISHED, 0);
	if (c->shut && s->deadline_us == 0) {
		/* The server is gone and its FIN passed on: the client has
		 * nothing left to say, only a short while to hang up in. */
		session_deadline(s, net_now_us(), SESSION_LINGER_MS);
	}
	return 0;
}

static int
relay_enter(struct session *s, const char *p, size_t n)
{
	int rc;

	shm_server_count_session(session_server_slot(s));
	/* Implicit TLS has no gate: the client speaks first. */
	if (s->listener->cfg->mode == CFG_MODE_SMTP)
		metrics_count_first_line(session_server_slot(s),
		    net_now_us() - s->pre->t_connect);
	relay_set_timeout(&s->server, session_pool(s)->cfg->server_timeout_ms);
	rc = relay_begin(s, p, n);	/* takes the held bytes */
	session_pre_free(s);
	return session_relay_check(s, rc);
}

static int
relay_on_side(struct session *s, struct session_side *d, short what)
{
	if (what & EV_TIMEOUT) {
		if (!relay_expired(s, d))
			return 0;
		return session_finalize(s, relay_blame(s, d) == &s->client ?
		    VERDICT_CLIENT_TIMEOUT : VERDICT_SERVER_TIMEOUT, 0);
	}
	return session_relay_check(s, relay_pump(s, d, what));
}

static int
relay_on_client_ev(struct session *s, short what)
{
	return relay_on_side(s, &s->client, what);
}

static int
relay_on_server_ev(struct session *s, short what)
{
	return relay_on_side(s, &s->server, what);
}

/* The linger after the server's FIN ended. */
static int
relay_on_deadline(struct session *s)
{
	return session_finalize(s, VERDICT_CLIENT_TIMEOUT, 0);
}

static short
relay_want(const struct session *s, const struct session_side *d)
{
	return (d->eof || d->paused || d->stalled ? 0 : session_rd()) |
	    session_w(d);
}

/* ----------------------------------------------------------- closing */

/*
 * Say the reply (unless the listener is implicit TLS, where the client
 * speaks first and an SMTP line would be noise), then close with a FIN:
 * drain what the client still sends, at most SESSION_LINGER_READ bytes
 * for at most SESSION_LINGER_MS, so the kernel does not answer unread
 * bytes with a reset.
 */
static int
closing_enter(struct session *s, const char *reply, size_t n)
{
	struct session_side *c = &s->client;

	/* No inactivity any more, only the linger's end. */
	relay_set_timeout(c, 0);
	s->linger_read = 0;
	session_deadline(s, net_now_us(), SESSION_LINGER_MS);
	if (s->listener->cfg->mode == CFG_MODE_SMTP &&
	    relay_put(c, reply, n) == -1) {
		session_free(s);
		return -1;
	}
	if (c->out == NULL && c->piped == 0) {
		(void)shutdown(c->fd, SHUT_WR);
		c->shut = true;
	}
	return 0;
}

/* Flush the 421, pass the FIN, drain until the client's FIN (EOF, an
 * error, 4 KiB or the deadline: nothing more to say). */
static int
closing_on_client(struct session *s, short what)
{
	struct session_side *c = &s->client;
	ssize_t n;

	if ((what & EV_WRITE) && (c->out != NULL || c->piped > 0)) {
		if (relay_flush(c) == -1)
			return session_finalize(s, VERDICT_CLIENT_GONE, errno);
		if (c->out == NULL && c->piped == 0 && !c->shut) {
			(void)shutdown(c->fd, SHUT_WR);
			c->shut = true;
		}
	}
	if (what & EV_READ) {
		/* A client that keeps sending is not listening. */
		n = relay_recv(c->fd, session_scratch,
		    SESSION_LINGER_READ - s->linger_read);
		if (n == 0 || (n == -1 && !relay_again()))
			return session_finalize(s, VERDICT_CLIENT_GONE, 0);
		if (n > 0) {
			s->linger_read += (unsigned short)n;
			if (s->linger_read >= SESSION_LINGER_READ)
				return session_finalize(s,
				    VERDICT_CLIENT_GONE, 0);
		}
	}
	return 0;
}

static int
closing_on_deadline(struct session *s)
{
	return session_finalize(s, VERDICT_CLIENT_TIMEOUT, 0);
}

static short
closing_want(const struct session *s, const struct session_side *d)
{
	return d == &s->client ? session_rd() | session_w(d) : 0;
}

static const struct session_phase session_phases[SESSION_CLOSING + 1] = {
	[SESSION_HEADER] = { "header", header_enter, header_on_client,
	    none_on_event, header_on_deadline, header_want },
	[SESSION_CONNECTING] = { "connecting", connect_enter,
	    gate_on_client_ev, gate_on_server_ev, gate_on_deadline,
	    gate_want },
	[SESSION_GATE] = { "gate", gate_enter, gate_on_client_ev,
	    gate_on_server_ev, gate_on_deadline, gate_want },
	[SESSION_RELAY] = { "relay", relay_enter, relay_on_client_ev,
	    relay_on_server_ev, relay_on_deadline, relay_want },
	[SESSION_CLOSING] = { "closing", closing_enter, closing_on_client,
	    none_on_event, closing_on_deadline, closing_want },
};

/* --------------------------------------------------------- admission */

/* The cause each admission verdict ends a session with. */
static const enum verdict_cause session_admit_causes[] = {
	[ADMIT_DENIED] = VERDICT_DENIED,
	[ADMIT_DENIED_RUNTIME] = VERDICT_DENIED_RUNTIME,
	[ADMIT_OVERLOAD] = VERDICT_OVERLOAD,
	[ADMIT_CLIENT_LIMIT] = VERDICT_CLIENT_LIMIT,
	[ADMIT_CLIENT_RATE] = VERDICT_CLIENT_RATE,
};

/*
 * Admission (core/worker/admission.c): the deny lists, the listener's
 * max_connections, the client network's limits. Returns 0 when admitted,
 * else -1 with the cause in *why. Behind accept_proxy it runs once the
 * header named the client; the session counted against its listener from
 * accept on.
 */
static int
session_admit(struct session *s, enum verdict_cause *why)
{
	enum admit_verdict v;
	char text[256];

	v = admission_check(s->listener, session_pool(s)->cfg, &s->peer.sa,
	    &s->admit, text, sizeof(text));
	if (v == ADMIT_OK)
		return 0;
	if (text[0] != '\0')
		session_add_error(s, "%s", text);
	*why = session_admit_causes[v];
	return -1;
}

/* Admitted: to the first attempt; refused: the 421. */
static int
session_admit_or_end(struct session *s)
{
	enum verdict_cause why;

	if (session_admit(s, &why) == -1)
		return session_finalize(s, why, 0);
	return session_goto(s, SESSION_CONNECTING, NULL, 0);
}

void
session_listener_setup(int fd)
{
	int size = SESSION_CLIENT_SNDBUF;

	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) == -1)
		log_warn("session: SO_SNDBUF on a listening socket");
}

void
session_start(struct session_env *env, const struct rt_listener *l,
    const struct rt_bind *b, int fd, const struct sockaddr *peer,
    socklen_t peerlen)
{
	const struct cfg_listener *lc = l->cfg;
	struct session *s;
	socklen_t len;
	size_t nservers;
	int on = 1;

	s = calloc(1, sizeof(*s));
	if (s != NULL && (s->pre = calloc(1, sizeof(*s->pre))) == NULL) {
		free(s);
		s = NULL;
	}
	if (s == NULL) {
		log_warn("session: out of memory");
		session_refuse(env, l, fd, peer, peerlen, "out of memory");
		return;
	}
	s->sid = ++session_count;
	s->env = env;
	s->listener = l;
	s->server_idx = -1;
	s->t_start = net_now_us();
	relay_side_init(&s->client, fd, lc->client_timeout_ms);
	relay_side_init(&s->server, -1, 0);
	s->client.peer = &s->server;
	s->server.peer = &s->client;
	dialog_init(&s->dialog, lc->mode == CFG_MODE_TLS);
	memcpy(&s->peer, peer, peerlen < sizeof(s->peer) ? peerlen :
	    sizeof(s->peer));
	len = sizeof(s->pre->local);
	if (!b->wildcard || getsockname(fd, &s->pre->local.sa, &len) == -1)
		memcpy(&s->pre->local, &b->addr->ss,
		    b->addr->len < sizeof(s->pre->local) ? b->addr->len :
		    sizeof(s->pre->local));
	/* SMTP is a dialogue of small writes: never let Nagle hold one back
	 * waiting for an ACK. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	nservers = session_pool(s)->cfg->nservers;
	if (nservers > SESSION_TRIED_BITS &&
	    (s->pre->tried_big = calloc(nservers, sizeof(bool))) == NULL) {
		log_warn("session: out of memory");
		free(s->pre);
		free(s);
		session_refuse(env, l, fd, peer, peerlen, "out of memory");
		return;
	}
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	env->nsessions++;
	if ((lc->accept_proxy ? session_goto(s, SESSION_HEADER, NULL, 0) :
	    session_admit_or_end(s)) == 0)
		session_arm(s);
}

void
session_refuse(struct session_env *env, const struct rt_listener *l,
    int fd, const struct sockaddr *peer, socklen_t peerlen, const char *why)
{
	struct session s;
	char line[400], buf[4096];
	int n;

	memset(&s, 0, sizeof(s));
	s.sid = ++session_count;
	s.env = env;
	s.listener = l;
	s.server_idx = -1;
	s.t_start = net_now_us();
	memcpy(&s.peer, peer, peerlen < sizeof(s.peer) ? peerlen :
	    sizeof(s.peer));
	s.result = session_verdict(&s, VERDICT_OVERLOAD, 0);
	session_add_error(&s, "%s", why);
	if (l->cfg->mode == CFG_MODE_SMTP) {
		n = snprintf(line, sizeof(line), "421 4.7.0 %s Too many "
		    "connections, try again later\r\n",
		    env->rt->cfg->hostname);
		if (send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
			s.bytes_out = (uint64_t)n;
	}
	(void)shutdown(fd, SHUT_WR);
	/* Unread bytes would turn the close into a reset. */
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	close(fd);
	session_log(&s);
	free(s.last_error);
}

void
session_close_all(struct session_env *env)
{
	struct session *s;

	/* Lingering ones are logged already and just freed. */
	while ((s = TAILQ_FIRST(&sessions)) != NULL)
		(void)session_finalize(s, VERDICT_SHUTDOWN, 0);
}
