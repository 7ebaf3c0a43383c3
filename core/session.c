/* SPDX-License-Identifier: MIT */
/*
 * session: one client connection, accept to log line. Owns both
 * bufferevents; only session_free() frees them, and a callback that ends the
 * session returns at once. States: CONNECTING (an attempt in flight, client
 * bytes held), GATE (header sent, waiting for the backend's first reply
 * line), RELAY (bytes both ways with backpressure), CLOSING (a 421 is being
 * flushed, then the client's input is drained so the close is a FIN).
 */
#include <sys/queue.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/log.h"
#include "core/net.h"
#include "core/session.h"
#include "core/shm.h"
#include "smtp/proxy.h"
#include "smtp/reply.h"

/* Early client bytes held before the backend's first line (SPEC.md). */
#define SESSION_HOLD_MAX	4096
/* Output queued toward one peer before we stop reading the other. */
#define RELAY_MAX_OUT		(512 * 1024)
/* Bytes per read(2): big reads make the cost per GB low. */
#define RELAY_READ_MAX		(256 * 1024)
/* How long a closing client may take to read our 421 and hang up. */
#define CLOSING_LINGER_MS	10000
/* A backend's first line longer than this is passed on as is. */
#define GATE_LINE_MAX		4096

enum session_state {
	SESSION_CONNECTING,
	SESSION_GATE,
	SESSION_RELAY,
	SESSION_CLOSING,
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct session_env *env;
	const struct rt_listener *listener;
	const struct rt_pool *pool;
	struct bufferevent *client;
	struct bufferevent *server;
	enum session_state state;
	struct sockaddr_storage peer;
	struct sockaddr_storage local;
	int server_idx;			/* within the pool; -1 = none yet */
	bool server_counted;		/* holds +1 in shm server_active */
	unsigned attempts;
	bool *tried;
	bool tried_inline[16];
	int64_t t_start;
	int64_t t_connect;
	double connect_ms;
	uint64_t bytes_in;		/* client -> server */
	uint64_t bytes_out;		/* server -> client */
	bool client_eof;
	bool server_eof;
	bool client_shut;		/* we sent FIN to the client */
	bool server_shut;
	const char *result;
	bool logged;
	bool listener_counted;		/* holds +1 in shm listener_active */
	char last_error[192];
};

TAILQ_HEAD(session_list, session);
static struct session_list sessions = TAILQ_HEAD_INITIALIZER(sessions);

static void session_try_next(struct session *s);
static void session_on_client_read(struct bufferevent *bev, void *arg);
static void session_on_client_write(struct bufferevent *bev, void *arg);
static void session_on_client_event(struct bufferevent *bev, short what,
    void *arg);
static void session_on_server_read(struct bufferevent *bev, void *arg);
static void session_on_server_write(struct bufferevent *bev, void *arg);
static void session_on_server_event(struct bufferevent *bev, short what,
    void *arg);

static const struct cfg_server *
session_server(const struct session *s)
{
	return &s->pool->cfg->servers[s->server_idx];
}

static unsigned
session_server_slot(const struct session *s)
{
	return s->pool->server_slot[s->server_idx];
}

static void
session_set_error(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
session_set_error(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->last_error, sizeof(s->last_error), fmt, ap);
	va_end(ap);
}

static void
session_log(struct session *s)
{
	char client[NET_ADDR_TEXT], server[2 * CFG_NAME_MAX + 2];
	char backend[NET_ADDR_TEXT], err[sizeof(s->last_error) + 16];
	const struct cfg_server *srv;

	if (s->logged)
		return;
	s->logged = true;
	net_addr_fmt((struct sockaddr *)&s->peer, client, sizeof(client));
	if (s->server_idx >= 0) {
		srv = session_server(s);
		snprintf(server, sizeof(server), "%s/%s", s->pool->cfg->name,
		    srv->name);
		snprintf(backend, sizeof(backend), "%s", srv->address.text);
	} else {
		snprintf(server, sizeof(server), "-");
		snprintf(backend, sizeof(backend), "-");
	}
	err[0] = '\0';
	if (s->last_error[0] != '\0') {
		/* Quotes inside the value would break key=value parsing. */
		for (char *p = s->last_error; *p; p++)
			if (*p == '"' || (unsigned char)*p < 0x20)
				*p = '\'';
		snprintf(err, sizeof(err), " last_error=\"%s\"", s->last_error);
	}
	log_info("session client=%s listener=%s server=%s backend=%s proxy=%s "
	    "attempts=%u connect_ms=%.1f duration_ms=%.0f bytes_in=%llu "
	    "bytes_out=%llu result=%s%s", client, s->listener->cfg->name,
	    server, backend, cfg_proxy_names[s->pool->cfg->proxy],
	    s->attempts, s->connect_ms,
	    (double)(net_now_us() - s->t_start) / 1000.0,
	    (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out,
	    s->result ? s->result : "ok", err);
}

static void
session_drop_server(struct session *s)
{
	if (s->server != NULL) {
		bufferevent_free(s->server);
		s->server = NULL;
	}
	if (s->server_counted) {
		shm_server_add(session_server_slot(s), -1);
		s->server_counted = false;
	}
}

static void
session_free(struct session *s)
{
	struct session_env *env = s->env;

	session_log(s);
	session_drop_server(s);
	if (s->client != NULL)
		bufferevent_free(s->client);
	if (s->listener_counted)
		shm_listener_add(s->listener->slot, -1);
	TAILQ_REMOVE(&sessions, s, entry);
	if (s->tried != s->tried_inline)
		free(s->tried);
	free(s);
	env->nsessions--;
	if (env->on_close != NULL)
		env->on_close(env->arg);
}

/*
 * Say `reply` to the client (unless the listener is implicit TLS, where the
 * client speaks first and an SMTP line would be noise), then close with a
 * FIN: drain whatever the client still sends so the kernel does not answer
 * unread bytes with a reset.
 */
static void
session_reply_close(struct session *s, const char *reply, const char *result)
{
	char line[512];
	int n;

	if (s->result == NULL)
		s->result = result;
	session_drop_server(s);
	s->server_idx = -1;	/* "server=-": none was reached */
	session_log(s);
	s->state = SESSION_CLOSING;
	/* A refused connection is no longer a session: it must not keep
	 * the next client out while it lingers for the FIN. */
	if (s->listener_counted) {
		shm_listener_add(s->listener->slot, -1);
		s->listener_counted = false;
	}
	bufferevent_setcb(s->client, session_on_client_read,
	    session_on_client_write, session_on_client_event, s);
	bufferevent_setwatermark(s->client, EV_READ, 0, 0);
	evbuffer_drain(bufferevent_get_input(s->client),
	    evbuffer_get_length(bufferevent_get_input(s->client)));
	if (reply != NULL && s->listener->cfg->mode == CFG_MODE_SMTP) {
		n = snprintf(line, sizeof(line), "%s\r\n", reply);
		bufferevent_write(s->client, line, (size_t)n);
	}
	struct timeval tv = { CLOSING_LINGER_MS / 1000,
	    (CLOSING_LINGER_MS % 1000) * 1000 };
	bufferevent_set_timeouts(s->client, &tv, &tv);
	bufferevent_enable(s->client, EV_READ | EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(s->client)) == 0)
		session_on_client_write(s->client, s);
}

static void
session_reply_fmt(struct session *s, const char *result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
session_reply_fmt(struct session *s, const char *result, const char *fmt, ...)
{
	char reply[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reply, sizeof(reply), fmt, ap);
	va_end(ap);
	session_reply_close(s, reply, result);
}

/* End the session now (both sides closed or a fatal condition). */
static void
session_end(struct session *s, const char *result)
{
	if (s->result == NULL)
		s->result = result;
	session_free(s);
}

static void
ms_to_tv(unsigned ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

void
session_start(struct session_env *env, const struct rt_listener *l,
    const struct rt_bind *b, int fd, const struct sockaddr *peer,
    socklen_t peerlen)
{
	const struct cfg_listener *lc = l->cfg;
	struct session *s;
	struct timeval tv;
	socklen_t len;
	size_t nservers;
	uint32_t active;

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		log_warn("session: out of memory");
		close(fd);
		return;
	}
	s->env = env;
	s->listener = l;
	s->pool = &env->rt->pools[lc->pool];
	s->server_idx = -1;
	s->t_start = net_now_us();
	memcpy(&s->peer, peer, peerlen);
	if (b->wildcard) {
		len = sizeof(s->local);
		if (getsockname(fd, (struct sockaddr *)&s->local, &len) == -1)
			memcpy(&s->local, &b->addr->ss, b->addr->len);
	} else {
		memcpy(&s->local, &b->addr->ss, b->addr->len);
	}
	nservers = s->pool->cfg->nservers;
	s->tried = s->tried_inline;
	if (nservers > sizeof(s->tried_inline) &&
	    (s->tried = calloc(nservers, sizeof(bool))) == NULL) {
		log_warn("session: out of memory");
		free(s);
		close(fd);
		return;
	}
	s->client = bufferevent_socket_new(env->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->client == NULL) {
		log_warnx("session: cannot create bufferevent");
		if (s->tried != s->tried_inline)
			free(s->tried);
		free(s);
		close(fd);
		return;
	}
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	env->nsessions++;
	active = shm_listener_active(l->slot);
	shm_listener_add(l->slot, +1);
	s->listener_counted = true;
	bufferevent_setcb(s->client, session_on_client_read,
	    session_on_client_write, session_on_client_event, s);

	if (active >= lc->max_connections) {
		session_reply_fmt(s, "overload", "421 4.7.0 %s Too many "
		    "connections, try again later", env->rt->cfg->hostname);
		return;
	}
	/* Hold early client bytes (pregreeting clients) until the gate. */
	bufferevent_setwatermark(s->client, EV_READ, 0, SESSION_HOLD_MAX);
	ms_to_tv(lc->client_timeout_ms, &tv);
	bufferevent_set_timeouts(s->client, &tv, &tv);
	bufferevent_enable(s->client, EV_READ);
	session_try_next(s);
}

static void
session_no_backend(struct session *s)
{
	session_reply_fmt(s, "no-backend", "421 4.3.2 %s Service not "
	    "available, try again later", s->env->rt->cfg->hostname);
}

/* Build the view the balancer needs from shared memory. */
static int
session_pick(struct session *s)
{
	const struct cfg_pool *pc = s->pool->cfg;
	struct bal_server view_inline[16] = { 0 }, *view = view_inline;
	bool need_active = pc->balance == CFG_BALANCE_LEASTCONN;
	int idx;

	if (pc->nservers > 16 &&
	    (view = calloc(pc->nservers, sizeof(*view))) == NULL)
		return -1;
	for (size_t i = 0; i < pc->nservers; i++) {
		unsigned slot = s->pool->server_slot[i];

		view[i].usable = shm_health_state(slot) != SHM_HEALTH_DOWN &&
		    shm_admin_get(slot) == SHM_ADMIN_READY;
		view[i].active = 0;
		if (need_active || pc->servers[i].max_connections > 0)
			view[i].active = shm_server_active(slot);
	}
	idx = bal_pick(s->env->bal[s->listener->cfg->pool], view, s->tried,
	    (struct sockaddr *)&s->peer);
	if (view != view_inline)
		free(view);
	return idx;
}

/* One failed attempt: count it, note why, and go on to the next server. */
static void
session_attempt_failed(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
session_attempt_failed(struct session *s, const char *fmt, ...)
{
	const struct cfg_server *srv = session_server(s);
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	shm_server_failure(session_server_slot(s));
	session_set_error(s, "%s/%s: %s", s->pool->cfg->name, srv->name, why);
	log_debug("session: server %s/%s %s: %s", s->pool->cfg->name,
	    srv->name, srv->address.text, why);
	session_drop_server(s);
	session_try_next(s);
}

static void
session_try_next(struct session *s)
{
	const struct cfg_pool *pc = s->pool->cfg;
	const struct cfg_server *srv;
	struct timeval tv;
	int fd, idx, on = 1;

	for (;;) {
		if (s->attempts >= 1 + pc->retries) {
			session_no_backend(s);
			return;
		}
		idx = session_pick(s);
		if (idx < 0) {
			if (s->attempts == 0)
				session_set_error(s, "no usable server in "
				    "pool %s", pc->name);
			session_no_backend(s);
			return;
		}
		s->tried[idx] = true;
		s->attempts++;
		s->server_idx = idx;
		srv = &pc->servers[idx];
		shm_server_add(session_server_slot(s), +1);
		s->server_counted = true;
		s->t_connect = net_now_us();

		fd = socket(srv->address.ss.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1) {
			session_set_error(s, "socket: %s", strerror(errno));
			log_warn("session: socket");
			session_drop_server(s);
			session_no_backend(s);
			return;
		}
		/* SMTP is a dialogue of small writes: never let Nagle hold
		 * one back waiting for an ACK. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
		if (connect(fd, (const struct sockaddr *)&srv->address.ss,
		    srv->address.len) == -1 && errno != EINPROGRESS) {
			int err = errno;

			close(fd);
			errno = err;
			session_attempt_failed(s, "connect: %s", strerror(err));
			return;
		}
		s->server = bufferevent_socket_new(s->env->base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
		if (s->server == NULL) {
			close(fd);
			session_set_error(s, "cannot create bufferevent");
			session_drop_server(s);
			session_no_backend(s);
			return;
		}
		bufferevent_setcb(s->server, session_on_server_read,
		    session_on_server_write, session_on_server_event, s);
		ms_to_tv(pc->connect_timeout_ms, &tv);
		bufferevent_set_timeouts(s->server, NULL, &tv);
		s->state = SESSION_CONNECTING;
		/* NULL address: the socket is already connecting. */
		if (bufferevent_socket_connect(s->server, NULL, 0) == -1) {
			session_attempt_failed(s, "connect: %s",
			    strerror(errno));
			return;
		}
		return;
	}
}

/*
 * libevent 2.1's evbuffer_read() reads at most 4096 bytes per call
 * (EVBUFFER_MAX_READ) after an ioctl(FIONREAD): 26,000 reads and ioctls per
 * 100 MB. When the bufferevent's read came back full, more is waiting: take
 * up to RELAY_READ_MAX in one readv. Returns 0, 1 on EOF, -1 on an error
 * (errno set); the caller reports those as the bufferevent would have.
 */
static int
session_read_more(struct bufferevent *from, struct evbuffer *buf)
{
	struct evbuffer_iovec v[2];
	struct iovec iov[2];
	ssize_t r;
	size_t left;
	int n;

	n = evbuffer_reserve_space(buf, RELAY_READ_MAX, v, 2);
	if (n <= 0)
		return 0;
	for (int i = 0; i < n; i++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len;
	}
	r = readv(bufferevent_getfd(from), iov, n);
	if (r <= 0) {
		evbuffer_commit_space(buf, v, 0);
		if (r == 0)
			return 1;
		return (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR) ? 0 : -1;
	}
	left = (size_t)r;
	for (int i = 0; i < n; i++) {
		if (v[i].iov_len > left)
			v[i].iov_len = left;
		left -= v[i].iov_len;
	}
	evbuffer_commit_space(buf, v, n);
	return 0;
}

/* Write `buf` straight to the peer's socket when nothing is queued there,
 * then queue whatever is left behind the bufferevent. */
static void
session_forward(struct evbuffer *buf, struct bufferevent *to)
{
	struct evbuffer *out = bufferevent_get_output(to);

	/* Writing at once instead of arming a write event for the next loop
	 * turn saves two epoll_ctl calls and a wakeup per chunk. What the
	 * socket does not take (or an error) is left to the bufferevent. */
	if (evbuffer_get_length(out) == 0 && evbuffer_get_length(buf) > 0)
		(void)evbuffer_write(buf, bufferevent_getfd(to));
	if (evbuffer_get_length(buf) > 0)
		evbuffer_add_buffer(out, buf);
}

/*
 * Move everything from one side's input to the other's output. With
 * `pull` (from a read callback), read on when the bufferevent's read was
 * cut at libevent's 4 KiB. Returns what session_read_more() returned.
 */
static int
session_relay(struct session *s, struct bufferevent *from,
    struct bufferevent *to, uint64_t *counter, bool pull)
{
	/* The input's end is frozen outside libevent's own reads, so the
	 * extra read goes through a scratch buffer (chains move, no copy). */
	static struct evbuffer *scratch;
	struct evbuffer *in = bufferevent_get_input(from);
	struct evbuffer *out = bufferevent_get_output(to);
	size_t n = evbuffer_get_length(in);
	int rr = 0, err = 0;

	*counter += n;
	session_forward(in, to);
	if (pull && n >= 4096 && evbuffer_get_length(out) < RELAY_MAX_OUT &&
	    (scratch != NULL || (scratch = evbuffer_new()) != NULL)) {
		if ((rr = session_read_more(from, scratch)) == -1)
			err = errno;
		*counter += evbuffer_get_length(scratch);
		session_forward(scratch, to);
	}
	if (evbuffer_get_length(out) >= RELAY_MAX_OUT) {
		/* Backpressure: stop reading until the peer drains half. */
		bufferevent_disable(from, EV_READ);
		bufferevent_setwatermark(to, EV_WRITE, RELAY_MAX_OUT / 2, 0);
	}
	errno = err;
	return rr;
}

/* The greeting gate is passed: start relaying both ways. */
static void
session_begin_relay(struct session *s)
{
	const struct cfg_pool *pc = s->pool->cfg;
	struct timeval tv;

	s->state = SESSION_RELAY;
	shm_server_count_session(session_server_slot(s));
	ms_to_tv(pc->server_timeout_ms, &tv);
	bufferevent_set_timeouts(s->server, &tv, &tv);
	bufferevent_setwatermark(s->client, EV_READ, 0, 0);
	bufferevent_set_max_single_read(s->client, RELAY_READ_MAX);
	bufferevent_set_max_single_read(s->server, RELAY_READ_MAX);
	(void)session_relay(s, s->server, s->client, &s->bytes_out, false);
	(void)session_relay(s, s->client, s->server, &s->bytes_in, false);
	if (!s->client_eof)
		bufferevent_enable(s->client, EV_READ);
	bufferevent_enable(s->server, EV_READ);
	if (s->client_eof) {
		/* The client finished while held: pass its FIN on. */
		session_on_server_write(s->server, s);
	}
}

static void
session_on_connected(struct session *s)
{
	const struct cfg_pool *pc = s->pool->cfg;
	uint8_t hdr[PROXY_HEADER_MAX];
	struct timeval tv;
	int n = 0;

	s->connect_ms = (double)(net_now_us() - s->t_connect) / 1000.0;
	if (pc->proxy == CFG_PROXY_V1)
		n = proxy_v1_encode((char *)hdr, sizeof(hdr),
		    (struct sockaddr *)&s->peer, (struct sockaddr *)&s->local);
	else if (pc->proxy == CFG_PROXY_V2)
		n = proxy_v2_encode(hdr, sizeof(hdr),
		    (struct sockaddr *)&s->peer, (struct sockaddr *)&s->local);
	if (n < 0) {
		session_set_error(s, "cannot encode PROXY header");
		session_drop_server(s);
		session_no_backend(s);
		return;
	}
	/* The header goes out in one write, before any client byte: no
	 * client byte is queued toward the server before the gate. */
	if (n > 0)
		bufferevent_write(s->server, hdr, (size_t)n);
	if (s->listener->cfg->mode == CFG_MODE_TLS) {
		/* Implicit TLS: the client speaks first, nothing to gate. */
		session_begin_relay(s);
		return;
	}
	s->state = SESSION_GATE;
	ms_to_tv(pc->greeting_timeout_ms, &tv);
	bufferevent_set_timeouts(s->server, &tv, &tv);
	bufferevent_enable(s->server, EV_READ);
}

static void
session_gate_check(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->server);
	struct reply_parser rp;
	struct reply_line line;
	struct evbuffer_ptr eol;
	size_t eol_len = 0, consumed, len;
	enum reply_status st;
	char *p;

	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(in) < GATE_LINE_MAX)
			return;		/* wait for the rest of the line */
		session_begin_relay(s);
		return;
	}
	len = (size_t)eol.pos + eol_len;
	p = (char *)evbuffer_pullup(in, (ev_ssize_t)len);
	reply_parser_init(&rp);
	st = reply_parse_line(&rp, p, len, &consumed, &line);
	if ((st == REPLY_LINE || st == REPLY_DONE) &&
	    reply_is_server_busy(&line)) {
		session_attempt_failed(s, "greeting %d %s", line.code,
		    line.text);
		return;
	}
	/* Any other first line is the backend's answer to this client. */
	session_begin_relay(s);
}

/* An EOF or error met by session_read_more(): report it as the
 * bufferevent itself would have, after the bytes already read. */
static void
session_relay_pulled(struct session *s, struct bufferevent *bev, int rr,
    void (*on_event)(struct bufferevent *, short, void *))
{
	if (rr == 0)
		return;
	bufferevent_disable(bev, EV_READ);
	on_event(bev, BEV_EVENT_READING |
	    (rr > 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), s);
}

static void
session_on_server_read(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->state == SESSION_GATE)
		session_gate_check(s);
	else if (s->state == SESSION_RELAY)
		session_relay_pulled(s, bev, session_relay(s, s->server,
		    s->client, &s->bytes_out, true), session_on_server_event);
}

static void
session_on_client_read(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (s->state == SESSION_RELAY)
		session_relay_pulled(s, bev, session_relay(s, s->client,
		    s->server, &s->bytes_in, true), session_on_client_event);
	else if (s->state == SESSION_CLOSING)
		evbuffer_drain(in, evbuffer_get_length(in));
	/* CONNECTING / GATE: held; the watermark stops reading at 4 KiB. */
}

/* `bev`'s output drained to its low watermark. */
static void
session_on_write(struct session *s, struct bufferevent *bev,
    struct bufferevent *other, bool other_eof, bool *shut)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) <=
	    RELAY_MAX_OUT / 2 && other != NULL && !other_eof) {
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		bufferevent_enable(other, EV_READ);
	}
	if (other_eof && !*shut &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		/* The peer finished and all of it is written: pass the FIN. */
		shutdown(bufferevent_getfd(bev), SHUT_WR);
		*shut = true;
		if (bev == s->client) {
			/* The server is gone: the client has nothing left to
			 * say, only a short while to hang up in. */
			struct timeval tv;

			ms_to_tv(CLOSING_LINGER_MS, &tv);
			bufferevent_set_timeouts(s->client, &tv, &tv);
		}
	}
	if (s->client_shut && s->server_shut)
		session_end(s, "ok");
}

static void
session_on_client_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->state == SESSION_CLOSING) {
		if (!s->client_shut &&
		    evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
			shutdown(bufferevent_getfd(bev), SHUT_WR);
			s->client_shut = true;
		}
		return;
	}
	if (s->state == SESSION_RELAY)
		session_on_write(s, bev, s->server, s->server_eof,
		    &s->client_shut);
}

static void
session_on_server_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->state == SESSION_RELAY)
		session_on_write(s, bev, s->client, s->client_eof,
		    &s->server_shut);
}

static const char *
session_event_error(short what)
{
	int err = EVUTIL_SOCKET_ERROR();

	if (what & BEV_EVENT_TIMEOUT)
		return "timeout";
	if (what & BEV_EVENT_EOF)
		return "connection closed";
	return err ? strerror(err) : "error";
}

static void
session_on_client_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	if (s->state == SESSION_CLOSING) {
		/* EOF, error or linger timeout: nothing more to say. */
		session_free(s);
		return;
	}
	if (s->server_eof && s->client_shut) {
		/* Everything the server said was delivered and it hung up:
		 * however the client goes now, the session went well. */
		session_end(s, "ok");
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		session_set_error(s, "client %s timeout",
		    (what & BEV_EVENT_READING) ? "read" : "write");
		session_end(s, "client-timeout");
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		session_set_error(s, "client: %s", session_event_error(what));
		session_end(s, "client-closed");
		return;
	}
	if (!(what & BEV_EVENT_EOF))
		return;
	s->client_eof = true;
	if (s->state != SESSION_RELAY) {
		/* Gone before the backend greeted it: nothing to pass on. */
		session_set_error(s, "client closed before the greeting");
		session_end(s, "client-closed");
		return;
	}
	(void)session_relay(s, s->client, s->server, &s->bytes_in, false);
	session_on_server_write(s->server, s);
}

static void
session_on_server_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		session_on_connected(s);
		return;
	}
	if (s->state == SESSION_CONNECTING) {
		if (what & BEV_EVENT_TIMEOUT)
			session_attempt_failed(s, "connect: timeout");
		else
			session_attempt_failed(s, "connect: %s",
			    strerror(EVUTIL_SOCKET_ERROR()));
		return;
	}
	if (s->state == SESSION_GATE) {
		if (what & BEV_EVENT_TIMEOUT)
			session_attempt_failed(s, "timeout waiting for "
			    "greeting");
		else if (what & BEV_EVENT_EOF)
			session_attempt_failed(s, "connection closed before "
			    "greeting");
		else
			session_attempt_failed(s, "%s before greeting",
			    session_event_error(what));
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		session_set_error(s, "server %s timeout",
		    (what & BEV_EVENT_READING) ? "read" : "write");
		session_end(s, "server-timeout");
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		session_set_error(s, "server: %s", session_event_error(what));
		session_end(s, "server-closed");
		return;
	}
	if (!(what & BEV_EVENT_EOF))
		return;
	s->server_eof = true;
	(void)session_relay(s, s->server, s->client, &s->bytes_out, false);
	session_on_client_write(s->client, s);
}

void
session_close_all(struct session_env *env, const char *result)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&sessions)) != NULL) {
		if (!s->logged)
			session_set_error(s, "shutdown_timeout expired");
		session_end(s, result);
	}
}
