/* SPDX-License-Identifier: MIT */
/*
 * session: one client connection, accept to log line. A session is two
 * sockets, each watched by one persistent `struct event` embedded in the
 * session and carrying that side's inactivity timeout. Relayed bytes are
 * read into one scratch buffer per process and written straight to the
 * peer; only what a socket does not take is queued (an evbuffer that exists
 * while it holds bytes), so an idle session owns no buffer at all. A bulk
 * flow (a message body) goes socket to pipe to socket with splice(2), with
 * pipes lent from a per-process pool while bytes are in them. Only
 * session_free() frees; a handler that ends the session returns at once.
 * States: CONNECTING (an attempt in flight, client bytes held), GATE (header
 * sent, waiting for the backend's first reply line), RELAY (bytes both ways
 * with backpressure), CLOSING (a 421 is being flushed, then the client's
 * input is drained so the close is a FIN).
 */
#include <sys/queue.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>

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
/* iovecs per sendmsg(2) of queued bytes. */
#define SESSION_IOV_MAX		64
/* Servers tracked in the inline `tried` bitmask; bigger pools allocate. */
#define SESSION_TRIED_BITS	64
/* A read this big means a bulk flow (DATA): relay it with splice(2). */
#define SPLICE_MIN		(16 * 1024)
/* Bytes asked of one splice(2); the pipe bounds what it moves. */
#define SPLICE_PIPE_SIZE	(256 * 1024)
/* Idle pipes a worker keeps for the next bulk flow. */
#define SPLICE_POOL_MAX		32

enum session_state {
	SESSION_CONNECTING,
	SESSION_GATE,
	SESSION_RELAY,
	SESSION_CLOSING,
};

union session_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* One socket of a session. */
struct session_side {
	struct event ev;		/* valid while `armed` != 0 */
	struct evbuffer *out;		/* bytes for this socket, or NULL */
	int fd;				/* -1: none */
	int pipe[2];			/* spliced bytes for it, or -1 */
	size_t piped;			/* bytes in `pipe` (after `out`) */
	unsigned timeout_ms;		/* inactivity timeout, 0: none */
	short armed;			/* events `ev` was added with */
	bool retime;			/* timeout_ms changed since then */
	bool eof;			/* read 0: the peer sent its FIN */
	bool shut;			/* we sent our FIN */
	bool paused;			/* not read: the other side is full */
	bool bulk;			/* its last read was big */
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct session_env *env;
	const struct rt_listener *listener;
	const struct rt_pool *pool;
	struct session_side client;
	struct session_side server;
	struct evbuffer *hold;		/* early client bytes (gate) */
	char *last_error;		/* NULL when none */
	const char *result;
	bool *tried_big;		/* pools beyond SESSION_TRIED_BITS */
	uint64_t tried;			/* servers attempted, a bit each */
	int64_t t_start;
	int64_t t_connect;
	uint64_t bytes_in;		/* client -> server */
	uint64_t bytes_out;		/* server -> client */
	union session_addr peer;
	union session_addr local;
	float connect_ms;
	int server_idx;			/* within the pool; -1 = none yet */
	unsigned short attempts;
	unsigned char state;		/* enum session_state */
	bool server_counted;		/* holds +1 in shm server_active */
	bool listener_counted;		/* holds +1 in shm listener_active */
	bool logged;
};

TAILQ_HEAD(session_list, session);
static struct session_list sessions = TAILQ_HEAD_INITIALIZER(sessions);

/* Every read lands here first; bytes leave it before the handler returns. */
static char scratch[RELAY_READ_MAX];
/* EV_CLOSED when the backend reports a peer's FIN with its data. */
static short session_ev_closed = -1;
/* Empty pipes for splice(2), shared by the sessions of this process. */
static int splice_pool[SPLICE_POOL_MAX][2];
static int splice_npool;
static bool splice_broken;		/* pipes cannot be had: copy only */

static void session_try_next(struct session *s);
static void session_on_client(evutil_socket_t fd, short what, void *arg);
static void session_on_server(evutil_socket_t fd, short what, void *arg);

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
	char *e;

	va_start(ap, fmt);
	if (vasprintf(&e, fmt, ap) == -1)
		e = NULL;
	va_end(ap);
	if (e == NULL)
		return;		/* out of memory: keep the previous one */
	free(s->last_error);
	s->last_error = e;
}

static void
session_log(struct session *s)
{
	char client[NET_ADDR_TEXT], server[2 * CFG_NAME_MAX + 2];
	const char *backend = "-";
	const struct cfg_server *srv;

	if (s->logged)
		return;
	s->logged = true;
	if (!log_enabled(CFG_LOG_INFO))
		return;
	net_addr_fmt(&s->peer.sa, client, sizeof(client));
	if (s->server_idx >= 0) {
		srv = session_server(s);
		snprintf(server, sizeof(server), "%s/%s", s->pool->cfg->name,
		    srv->name);
		backend = srv->address.text;
	} else {
		snprintf(server, sizeof(server), "-");
	}
	if (s->last_error != NULL) {
		/* Quotes inside the value would break key=value parsing. */
		for (char *p = s->last_error; *p; p++)
			if (*p == '"' || (unsigned char)*p < 0x20)
				*p = '\'';
	}
	log_info("session client=%s listener=%s server=%s backend=%s proxy=%s "
	    "attempts=%u connect_ms=%.1f duration_ms=%.0f bytes_in=%llu "
	    "bytes_out=%llu result=%s%s%s%s", client, s->listener->cfg->name,
	    server, backend, cfg_proxy_names[s->pool->cfg->proxy],
	    s->attempts, (double)s->connect_ms,
	    (double)(net_now_us() - s->t_start) / 1000.0,
	    (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out,
	    s->result ? s->result : "ok",
	    s->last_error != NULL ? " last_error=\"" : "",
	    s->last_error != NULL ? s->last_error : "",
	    s->last_error != NULL ? "\"" : "");
}

/* ------------------------------------------------------------ sockets */

/* Events a side waits for in the session's current state. */
static short
session_want(const struct session *s, const struct session_side *d)
{
	/* Reading always asks for the FIN too: the same events in every
	 * state, so no state change costs an epoll_ctl. */
	short rd = EV_READ | session_ev_closed;
	short w = d->out != NULL || d->piped > 0 ? EV_WRITE : 0;
	bool client = d == &s->client;

	switch (s->state) {
	case SESSION_CONNECTING:
	case SESSION_GATE:
		if (client)	/* holding early bytes, up to the limit */
			return (s->hold == NULL || evbuffer_get_length(
			    s->hold) < SESSION_HOLD_MAX) ? rd : 0;
		if (s->state == SESSION_CONNECTING)
			return EV_WRITE;
		return rd | w;
	case SESSION_RELAY:
		return (d->eof || d->paused ? 0 : rd) | w;
	case SESSION_CLOSING:
		return client ? rd | w : 0;
	}
	return 0;
}

/*
 * Bring a side's event in line with what it waits for. Re-adding restarts
 * its timeout, so it is done only when the events or the timeout changed:
 * a persistent event's timeout otherwise restarts on each activation,
 * which is exactly "inactivity".
 */
static void
session_arm(struct session *s, struct session_side *d, event_callback_fn cb)
{
	struct timeval tv;
	short want;

	if (d->fd == -1)
		return;
	want = session_want(s, d);
	if (want == d->armed && !d->retime)
		return;
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
	tv.tv_sec = d->timeout_ms / 1000;
	tv.tv_usec = (d->timeout_ms % 1000) * 1000;
	if (event_add(&d->ev, d->timeout_ms > 0 ? &tv : NULL) == -1) {
		log_warnx("session: cannot add event");
		return;
	}
	d->armed = want;
}

static void
session_update(struct session *s)
{
	session_arm(s, &s->client, session_on_client);
	session_arm(s, &s->server, session_on_server);
}

static void
session_set_timeout(struct session_side *d, unsigned ms)
{
	if (d->timeout_ms != ms) {
		d->timeout_ms = ms;
		d->retime = true;
	}
}

/* A pipe for bytes toward `d`, from the pool or new. */
static int
session_pipe_get(struct session_side *d)
{
	if (splice_broken)
		return -1;
	if (splice_npool > 0) {
		splice_npool--;
		d->pipe[0] = splice_pool[splice_npool][0];
		d->pipe[1] = splice_pool[splice_npool][1];
		return 0;
	}
	if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) == -1) {
		d->pipe[0] = d->pipe[1] = -1;
		return -1;
	}
	/* Bigger than the default 64 KiB: fewer calls per megabyte. Not
	 * fatal when the per-user pipe allowance says no. */
	(void)fcntl(d->pipe[1], F_SETPIPE_SZ, SPLICE_PIPE_SIZE);
	return 0;
}

/* Give `d`'s pipe back (empty) or close it (bytes still in it). */
static void
session_pipe_put(struct session_side *d)
{
	if (d->pipe[0] == -1)
		return;
	if (d->piped == 0 && splice_npool < SPLICE_POOL_MAX) {
		splice_pool[splice_npool][0] = d->pipe[0];
		splice_pool[splice_npool][1] = d->pipe[1];
		splice_npool++;
	} else {
		close(d->pipe[0]);
		close(d->pipe[1]);
	}
	d->pipe[0] = d->pipe[1] = -1;
	d->piped = 0;
}

static void
session_side_close(struct session_side *d)
{
	session_pipe_put(d);
	if (d->armed != 0)
		event_del(&d->ev);
	if (d->fd != -1)
		close(d->fd);
	if (d->out != NULL)
		evbuffer_free(d->out);
	d->out = NULL;
	d->fd = -1;
	d->armed = 0;
	d->retime = d->eof = d->shut = d->paused = d->bulk = false;
}

static ssize_t
session_recv(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = recv(fd, buf, len, 0);
	while (n == -1 && errno == EINTR);
	return n;
}

static bool
session_again(void)
{
	return errno == EAGAIN || errno == EWOULDBLOCK;
}

/* Queue bytes behind what a side already waits to write. */
static int
session_queue(struct session_side *d, const void *p, size_t len)
{
	if (d->out == NULL && (d->out = evbuffer_new()) == NULL)
		goto nomem;
	if (evbuffer_add(d->out, p, len) == -1)
		goto nomem;
	return 0;
nomem:
	errno = ENOMEM;
	return -1;
}

/*
 * Send bytes to a side now when nothing is queued there (no write event,
 * no second loop turn), queue what its socket does not take. -1 with errno
 * when the socket failed or memory ran out.
 */
static int
session_put(struct session_side *d, const void *p, size_t len)
{
	ssize_t w = 0;

	if (len == 0)
		return 0;
	if (d->out == NULL) {
		do
			w = send(d->fd, p, len, MSG_NOSIGNAL);
		while (w == -1 && errno == EINTR);
		if (w == -1) {
			if (!session_again())
				return -1;
			w = 0;
		}
	}
	if ((size_t)w < len)
		return session_queue(d, (const char *)p + w, len - (size_t)w);
	return 0;
}

/* Write what is queued for a side, as far as its socket takes it. */
static int
session_flush(struct session_side *d)
{
	struct evbuffer_iovec v[SESSION_IOV_MAX];
	struct iovec iov[SESSION_IOV_MAX];
	struct msghdr mh;
	size_t total;
	ssize_t w;
	int n;

	while (d->out != NULL) {
		n = evbuffer_peek(d->out, -1, NULL, v, SESSION_IOV_MAX);
		if (n > SESSION_IOV_MAX)
			n = SESSION_IOV_MAX;
		total = 0;
		for (int i = 0; i < n; i++) {
			iov[i].iov_base = v[i].iov_base;
			iov[i].iov_len = v[i].iov_len;
			total += v[i].iov_len;
		}
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)n;
		w = sendmsg(d->fd, &mh, MSG_NOSIGNAL);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			return session_again() ? 0 : -1;
		}
		evbuffer_drain(d->out, (size_t)w);
		if (evbuffer_get_length(d->out) == 0) {
			evbuffer_free(d->out);
			d->out = NULL;
		} else if ((size_t)w < total) {
			return 0;	/* the socket is full */
		}
	}
	while (d->piped > 0) {
		w = splice(d->pipe[0], NULL, d->fd, NULL, d->piped,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			return session_again() ? 0 : -1;
		}
		if (w == 0)
			return 0;
		d->piped -= (size_t)w;
	}
	if (d->pipe[0] != -1)
		session_pipe_put(d);	/* drained: back to the pool */
	return 0;
}

/* -------------------------------------------------------------- ending */

static void
session_drop_server(struct session *s)
{
	session_side_close(&s->server);
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

static void
session_free(struct session *s)
{
	struct session_env *env = s->env;

	session_log(s);
	session_drop_server(s);
	session_side_close(&s->client);
	if (s->hold != NULL)
		evbuffer_free(s->hold);
	if (s->listener_counted)
		shm_listener_add(s->listener->slot, -1);
	TAILQ_REMOVE(&sessions, s, entry);
	free(s->tried_big);
	free(s->last_error);
	free(s);
	env->nsessions--;
	if (env->on_close != NULL)
		env->on_close(env->arg);
}

/* End the session now (both sides closed or a fatal condition). */
static void
session_end(struct session *s, const char *result)
{
	if (s->result == NULL)
		s->result = result;
	session_free(s);
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
	struct session_side *c = &s->client;
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
	if (s->hold != NULL) {
		evbuffer_free(s->hold);
		s->hold = NULL;
	}
	session_set_timeout(c, CLOSING_LINGER_MS);
	if (reply != NULL && s->listener->cfg->mode == CFG_MODE_SMTP) {
		n = snprintf(line, sizeof(line), "%s\r\n", reply);
		if (n >= (int)sizeof(line))
			n = (int)sizeof(line) - 1;
		if (session_put(c, line, (size_t)n) == -1) {
			session_free(s);
			return;
		}
	}
	if (c->out == NULL) {
		(void)shutdown(c->fd, SHUT_WR);
		c->shut = true;
	}
	session_update(s);
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

static void
session_no_backend(struct session *s)
{
	session_reply_fmt(s, "no-backend", "421 4.3.2 %s Service not "
	    "available, try again later", s->env->rt->cfg->hostname);
}

/* ------------------------------------------------------------ start-up */

void
session_start(struct session_env *env, const struct rt_listener *l,
    const struct rt_bind *b, int fd, const struct sockaddr *peer,
    socklen_t peerlen)
{
	const struct cfg_listener *lc = l->cfg;
	struct session *s;
	socklen_t len;
	size_t nservers;
	uint32_t active;

	if (session_ev_closed == -1)
		session_ev_closed = (event_base_get_features(env->base) &
		    EV_FEATURE_EARLY_CLOSE) ? EV_CLOSED : 0;
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
	s->client.fd = fd;
	s->server.fd = -1;
	s->client.pipe[0] = s->client.pipe[1] = -1;
	s->server.pipe[0] = s->server.pipe[1] = -1;
	s->client.timeout_ms = lc->client_timeout_ms;
	memcpy(&s->peer, peer, peerlen < sizeof(s->peer) ? peerlen :
	    sizeof(s->peer));
	len = sizeof(s->local);
	if (!b->wildcard || getsockname(fd, &s->local.sa, &len) == -1)
		memcpy(&s->local, &b->addr->ss,
		    b->addr->len < sizeof(s->local) ? b->addr->len :
		    sizeof(s->local));
	nservers = s->pool->cfg->nservers;
	if (nservers > SESSION_TRIED_BITS &&
	    (s->tried_big = calloc(nservers, sizeof(bool))) == NULL) {
		log_warn("session: out of memory");
		free(s);
		close(fd);
		return;
	}
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	env->nsessions++;
	active = shm_listener_active(l->slot);
	shm_listener_add(l->slot, +1);
	s->listener_counted = true;

	if (active >= lc->max_connections) {
		session_reply_fmt(s, "overload", "421 4.7.0 %s Too many "
		    "connections, try again later", env->rt->cfg->hostname);
		return;
	}
	s->state = SESSION_CONNECTING;
	session_try_next(s);
}

/* Build the view the balancer needs from shared memory. */
static int
session_pick(struct session *s)
{
	const struct cfg_pool *pc = s->pool->cfg;
	struct bal_server view_inline[16] = { 0 }, *view = view_inline;
	bool tried_inline[SESSION_TRIED_BITS], *tried = s->tried_big;
	bool need_active = pc->balance == CFG_BALANCE_LEASTCONN;
	int idx;

	if (pc->nservers > 16 &&
	    (view = calloc(pc->nservers, sizeof(*view))) == NULL)
		return -1;
	if (tried == NULL) {
		tried = tried_inline;
		for (size_t i = 0; i < pc->nservers; i++)
			tried[i] = (s->tried >> i) & 1;
	}
	for (size_t i = 0; i < pc->nservers; i++) {
		unsigned slot = s->pool->server_slot[i];

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
	s->state = SESSION_CONNECTING;
	session_try_next(s);
}

static void session_connect_done(struct session *s, bool eager);

static void
session_try_next(struct session *s)
{
	const struct cfg_pool *pc = s->pool->cfg;
	const struct cfg_server *srv;
	int fd, idx, on = 1;

	if (s->attempts >= 1 + pc->retries) {
		session_no_backend(s);
		return;
	}
	idx = session_pick(s);
	if (idx < 0) {
		if (s->attempts == 0)
			session_set_error(s, "no usable server in pool %s",
			    pc->name);
		session_no_backend(s);
		return;
	}
	if (s->tried_big != NULL)
		s->tried_big[idx] = true;
	else
		s->tried |= (uint64_t)1 << idx;
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
	/* SMTP is a dialogue of small writes: never let Nagle hold one back
	 * waiting for an ACK. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	if (connect(fd, (const struct sockaddr *)&srv->address.ss,
	    srv->address.len) == -1 && errno != EINPROGRESS) {
		int err = errno;

		close(fd);
		session_attempt_failed(s, "connect: %s", strerror(err));
		return;
	}
	s->server.fd = fd;
	s->server.timeout_ms = pc->connect_timeout_ms;
	s->state = SESSION_CONNECTING;
	/* On loopback or a near network the handshake is often done by now:
	 * try the header at once rather than after a writability event. */
	session_connect_done(s, true);
}

/* --------------------------------------------------------- the gate */

static void
session_relay_failed(struct session *s, struct session_side *d, int err);

/*
 * The gate is passed (or there is none): the greeting (what the gate
 * queued toward the client, then `p`) goes out, then the early client bytes
 * after the PROXY header. Returns -1 when the session ended.
 */
static int
session_begin_relay(struct session *s, const char *p, size_t n)
{
	struct session_side *c = &s->client, *sv = &s->server;
	int err;

	s->state = SESSION_RELAY;
	shm_server_count_session(session_server_slot(s));
	session_set_timeout(sv, s->pool->cfg->server_timeout_ms);
	if (c->out != NULL) {
		s->bytes_out += evbuffer_get_length(c->out);
		if (session_flush(c) == -1)
			goto client_failed;
	}
	s->bytes_out += n;
	if (session_put(c, p, n) == -1)
		goto client_failed;
	if (s->hold != NULL) {
		s->bytes_in += evbuffer_get_length(s->hold);
		if (sv->out == NULL) {
			sv->out = s->hold;
		} else if (evbuffer_add_buffer(sv->out, s->hold) == -1) {
			evbuffer_free(s->hold);
			s->hold = NULL;
			session_relay_failed(s, sv, ENOMEM);
			return -1;
		} else {
			evbuffer_free(s->hold);
		}
		s->hold = NULL;
		if (session_flush(sv) == -1) {
			session_relay_failed(s, sv, errno);
			return -1;
		}
	}
	session_update(s);
	return 0;
client_failed:
	err = errno;
	session_relay_failed(s, c, err);
	return -1;
}

/* The server's socket is connected, or may be: send the PROXY header. */
static void
session_connect_done(struct session *s, bool eager)
{
	const struct cfg_pool *pc = s->pool->cfg;
	struct session_side *sv = &s->server;
	uint8_t hdr[PROXY_HEADER_MAX];
	socklen_t len;
	ssize_t w;
	int n = 0, err = 0;

	if (pc->proxy == CFG_PROXY_V1)
		n = proxy_v1_encode((char *)hdr, sizeof(hdr), &s->peer.sa,
		    &s->local.sa);
	else if (pc->proxy == CFG_PROXY_V2)
		n = proxy_v2_encode(hdr, sizeof(hdr), &s->peer.sa,
		    &s->local.sa);
	if (n < 0) {
		session_set_error(s, "cannot encode PROXY header");
		session_drop_server(s);
		session_no_backend(s);
		return;
	}
	if (n > 0) {
		/* The header goes out in one write, before any client byte;
		 * its outcome is the connect's. */
		do
			w = send(sv->fd, hdr, (size_t)n, MSG_NOSIGNAL);
		while (w == -1 && errno == EINTR);
		if (w == -1) {
			if (session_again()) {
				session_update(s);	/* still connecting */
				return;
			}
			session_attempt_failed(s, "connect: %s",
			    strerror(errno));
			return;
		}
		if (w < n &&
		    session_queue(sv, hdr + w, (size_t)(n - w)) == -1) {
			session_attempt_failed(s, "connect: %s",
			    strerror(errno));
			return;
		}
	} else {
		if (eager) {
			session_update(s);	/* wait for writability */
			return;
		}
		len = sizeof(err);
		if (getsockopt(sv->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err != 0) {
			session_attempt_failed(s, "connect: %s", strerror(err));
			return;
		}
	}
	s->connect_ms = (float)(net_now_us() - s->t_connect) / 1000.0f;
	if (s->listener->cfg->mode == CFG_MODE_TLS) {
		/* Implicit TLS: the client speaks first, nothing to gate. */
		(void)session_begin_relay(s, NULL, 0);
		return;
	}
	s->state = SESSION_GATE;
	session_set_timeout(sv, pc->greeting_timeout_ms);
	session_update(s);
}

/*
 * Is the first line in `p` a "try another server" (421 4.3.x)? `len`
 * covers the line and its end.
 */
static bool
session_gate_busy(struct session *s, const char *p, size_t len)
{
	struct reply_parser rp;
	struct reply_line line;
	enum reply_status st;
	size_t consumed;

	reply_parser_init(&rp);
	st = reply_parse_line(&rp, p, len, &consumed, &line);
	if ((st == REPLY_LINE || st == REPLY_DONE) &&
	    reply_is_server_busy(&line)) {
		session_attempt_failed(s, "greeting %d %s", line.code,
		    line.text);
		return true;
	}
	return false;
}

/* The backend spoke before its first line was judged. */
static void
session_gate_read(struct session *s)
{
	struct session_side *c = &s->client, *sv = &s->server;
	struct evbuffer_ptr eol;
	const char *lf;
	size_t eol_len = 0, len;
	ssize_t n;
	char *p;

	n = session_recv(sv->fd, scratch, sizeof(scratch));
	if (n == -1) {
		if (session_again()) {
			session_update(s);
			return;
		}
		session_attempt_failed(s, "%s before greeting",
		    strerror(errno));
		return;
	}
	if (n == 0) {
		session_attempt_failed(s, "connection closed before greeting");
		return;
	}
	if (c->out == NULL &&
	    (lf = memchr(scratch, '\n', (size_t)n)) != NULL) {
		/* The whole line in one read: judge it where it lies. */
		if (session_gate_busy(s, scratch, (size_t)(lf - scratch) + 1))
			return;
		(void)session_begin_relay(s, scratch, (size_t)n);
		return;
	}
	/* Part of a line: the client's queue holds it (nothing writes there
	 * before the gate) until the rest arrives. */
	if (session_queue(c, scratch, (size_t)n) == -1) {
		session_attempt_failed(s, "%s", strerror(errno));
		return;
	}
	eol = evbuffer_search_eol(c->out, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(c->out) < GATE_LINE_MAX) {
			session_update(s);	/* wait for the rest */
			return;
		}
		(void)session_begin_relay(s, NULL, 0);
		return;
	}
	len = (size_t)eol.pos + eol_len;
	p = (char *)evbuffer_pullup(c->out, (ev_ssize_t)len);
	if (p != NULL && session_gate_busy(s, p, len))
		return;
	/* Any other first line is the backend's answer to this client. */
	(void)session_begin_relay(s, NULL, 0);
}

/* Early client bytes, held until the gate opens (at most 4 KiB read). */
static void
session_hold_read(struct session *s)
{
	struct session_side *c = &s->client;
	size_t held = s->hold != NULL ? evbuffer_get_length(s->hold) : 0;
	ssize_t n;

	n = session_recv(c->fd, scratch, SESSION_HOLD_MAX - held);
	if (n == -1 && session_again()) {
		session_update(s);
		return;
	}
	if (n == -1) {
		session_set_error(s, "client: %s", strerror(errno));
		session_end(s, "client-closed");
		return;
	}
	if (n == 0) {
		/* Gone before the backend greeted it: nothing to pass on. */
		c->eof = true;
		session_set_error(s, "client closed before the greeting");
		session_end(s, "client-closed");
		return;
	}
	if ((s->hold == NULL && (s->hold = evbuffer_new()) == NULL) ||
	    evbuffer_add(s->hold, scratch, (size_t)n) == -1) {
		session_set_error(s, "client: %s", strerror(ENOMEM));
		session_end(s, "client-closed");
		return;
	}
	session_update(s);
}

/* -------------------------------------------------------------- relay */

/* A side's socket failed while relaying. */
static void
session_relay_failed(struct session *s, struct session_side *d, int err)
{
	const char *why = err != 0 ? strerror(err) : "error";

	if (d == &s->client) {
		if (s->server.eof && s->client.shut) {
			/* Everything the server said was delivered and it
			 * hung up: however the client goes now, the session
			 * went well. */
			session_end(s, "ok");
			return;
		}
		session_set_error(s, "client: %s", why);
		session_end(s, "client-closed");
		return;
	}
	session_set_error(s, "server: %s", why);
	session_end(s, "server-closed");
}

/*
 * `a` finished (its FIN is in) or `b` drained: when all of a's bytes have
 * reached b, pass the FIN on. When both ways are done the session ends
 * (close(2) sends the FINs not sent yet). Returns -1 when it ended.
 */
static int
session_pass_fin(struct session *s, struct session_side *a,
    struct session_side *b)
{
	if (a->eof && !b->shut && b->out == NULL && b->piped == 0) {
		if (b->eof && a->out == NULL && a->piped == 0) {
			session_end(s, "ok");
			return -1;
		}
		(void)shutdown(b->fd, SHUT_WR);
		b->shut = true;
		if (b == &s->client) {
			/* The server is gone: the client has nothing left to
			 * say, only a short while to hang up in. */
			session_set_timeout(b, CLOSING_LINGER_MS);
		}
	}
	if (s->client.shut && s->server.shut) {
		session_end(s, "ok");
		return -1;
	}
	return 0;
}

/* `a` sent its FIN. */
static int
session_relay_eof(struct session *s, struct session_side *a,
    struct session_side *b)
{
	a->eof = true;
	if (a == &s->client && s->server.eof && s->client.shut) {
		session_end(s, "ok");
		return -1;
	}
	return session_pass_fin(s, a, b);
}

/* splice(2) from a's socket into b's pipe; -2 when splice cannot work
 * here (then the caller copies, and so does every later session). */
static ssize_t
session_splice_in(struct session_side *a, struct session_side *b, size_t len)
{
	ssize_t n;

	do
		n = splice(a->fd, NULL, b->pipe[1], NULL, len,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	while (n == -1 && errno == EINTR);
	if (n == -1 && (errno == EINVAL || errno == ENOSYS)) {
		splice_broken = true;
		session_pipe_put(b);
		return -2;
	}
	return n;
}

/*
 * Read what `a` sent and pass it to `b`: through b's pipe when the flow is
 * bulk (or the pipe still holds bytes), else straight through the scratch
 * buffer when b has nothing queued, else onto b's queue (no copy). With
 * `closed` (the poller saw a's FIN) a short read is the last one. Returns
 * -1 when the session ended.
 */
static int
session_relay_read(struct session *s, struct session_side *a,
    struct session_side *b, uint64_t *counter, bool closed)
{
	struct evbuffer_iovec v[2];
	struct iovec iov[2];
	size_t want = RELAY_READ_MAX, left;
	ssize_t n;
	int nv;

	if ((b->pipe[0] != -1 || (a->bulk && b->out == NULL)) &&
	    (b->pipe[0] != -1 || session_pipe_get(b) == 0) &&
	    (n = session_splice_in(a, b, want)) != -2) {
		if (n > 0) {
			*counter += (size_t)n;
			b->piped += (size_t)n;
			if (session_flush(b) == -1) {
				session_relay_failed(s, b, errno);
				return -1;
			}
		}
		/* The pipe's room is not known in bytes: read no more until
		 * b has taken all of it, or a full pipe would spin. */
		if (b->piped > 0)
			a->paused = true;
		else
			session_pipe_put(b);
		closed = false;	/* a short splice may be a full pipe */
	} else if (b->out == NULL) {
		n = session_recv(a->fd, scratch, want);
		if (n > 0) {
			*counter += (size_t)n;
			if (session_put(b, scratch, (size_t)n) == -1) {
				session_relay_failed(s, b, errno);
				return -1;
			}
		}
	} else {
		nv = evbuffer_reserve_space(b->out, (ev_ssize_t)want, v, 2);
		if (nv <= 0) {
			session_relay_failed(s, b, ENOMEM);
			return -1;
		}
		want = 0;
		for (int i = 0; i < nv; i++) {
			iov[i].iov_base = v[i].iov_base;
			iov[i].iov_len = v[i].iov_len;
			want += v[i].iov_len;
		}
		do
			n = readv(a->fd, iov, nv);
		while (n == -1 && errno == EINTR);
		if (n <= 0) {
			evbuffer_commit_space(b->out, v, 0);
		} else {
			left = (size_t)n;
			for (int i = 0; i < nv; i++) {
				if (v[i].iov_len > left)
					v[i].iov_len = left;
				left -= v[i].iov_len;
			}
			evbuffer_commit_space(b->out, v, nv);
			*counter += (size_t)n;
		}
	}
	if (n == -1) {
		if (session_again())
			return 0;
		session_relay_failed(s, a, errno);
		return -1;
	}
	a->bulk = (size_t)n >= SPLICE_MIN;
	if (b->out != NULL && evbuffer_get_length(b->out) >= RELAY_MAX_OUT)
		a->paused = true;	/* backpressure: until b drains half */
	if (n == 0 || (closed && (size_t)n < want))
		return session_relay_eof(s, a, b);
	return 0;
}

/* `b`'s socket is writable again: drain its queue. */
static int
session_relay_write(struct session *s, struct session_side *b,
    struct session_side *a)
{
	if (session_flush(b) == -1) {
		session_relay_failed(s, b, errno);
		return -1;
	}
	if (a->paused && b->piped == 0 && (b->out == NULL ||
	    evbuffer_get_length(b->out) <= RELAY_MAX_OUT / 2))
		a->paused = false;
	return session_pass_fin(s, a, b);
}

/* ------------------------------------------------------------ handlers */

static void
session_on_client(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct session_side *c = &s->client;
	ssize_t n;

	switch (s->state) {
	case SESSION_CLOSING:
		/* Flush the 421, pass the FIN, drain until the client's FIN
		 * (EOF, error or linger timeout: nothing more to say). */
		if (what & EV_TIMEOUT) {
			session_free(s);
			return;
		}
		if ((what & EV_WRITE) && c->out != NULL) {
			if (session_flush(c) == -1) {
				session_free(s);
				return;
			}
			if (c->out == NULL && !c->shut) {
				(void)shutdown(c->fd, SHUT_WR);
				c->shut = true;
			}
		}
		if (what & EV_READ) {
			n = session_recv(c->fd, scratch, sizeof(scratch));
			if (n == 0 || (n == -1 && !session_again())) {
				session_free(s);
				return;
			}
		}
		break;
	case SESSION_CONNECTING:
	case SESSION_GATE:
		if (what & EV_TIMEOUT) {
			session_set_error(s, "client read timeout");
			session_end(s, "client-timeout");
			return;
		}
		session_hold_read(s);
		return;
	case SESSION_RELAY:
		if (what & EV_TIMEOUT) {
			if (s->server.eof && c->shut) {
				session_end(s, "ok");
				return;
			}
			session_set_error(s, "client %s timeout",
			    (c->armed & EV_WRITE) ? "write" : "read");
			session_end(s, "client-timeout");
			return;
		}
		if ((what & EV_WRITE) &&
		    session_relay_write(s, c, &s->server) == -1)
			return;
		if ((what & (EV_READ | EV_CLOSED)) && !c->eof && !c->paused &&
		    session_relay_read(s, c, &s->server, &s->bytes_in,
		    (what & EV_CLOSED) != 0) == -1)
			return;
		break;
	}
	session_update(s);
}

static void
session_on_server(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct session_side *sv = &s->server;

	switch (s->state) {
	case SESSION_CONNECTING:
		if (what & EV_TIMEOUT) {
			session_attempt_failed(s, "connect: timeout");
			return;
		}
		session_connect_done(s, false);
		return;
	case SESSION_GATE:
		if (what & EV_TIMEOUT) {
			session_attempt_failed(s, "timeout waiting for "
			    "greeting");
			return;
		}
		if ((what & EV_WRITE) && session_flush(sv) == -1) {
			session_attempt_failed(s, "%s before greeting",
			    strerror(errno));
			return;
		}
		if (what & EV_READ) {
			session_gate_read(s);
			return;
		}
		break;
	case SESSION_RELAY:
		if (what & EV_TIMEOUT) {
			session_set_error(s, "server %s timeout",
			    (sv->armed & EV_WRITE) ? "write" : "read");
			session_end(s, "server-timeout");
			return;
		}
		if ((what & EV_WRITE) &&
		    session_relay_write(s, sv, &s->client) == -1)
			return;
		if ((what & (EV_READ | EV_CLOSED)) && !sv->eof &&
		    !sv->paused && session_relay_read(s, sv, &s->client,
		    &s->bytes_out, (what & EV_CLOSED) != 0) == -1)
			return;
		break;
	case SESSION_CLOSING:
		return;		/* no server any more */
	}
	session_update(s);
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
