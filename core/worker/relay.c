/* SPDX-License-Identifier: MIT */
/*
 * relay: a session's two sockets. Each is watched by one persistent
 * `struct event` embedded in the session. Relayed bytes are read into one
 * scratch buffer per process and written straight to the peer; only what
 * a socket does not take is queued (an evbuffer that exists while it holds
 * bytes), so an idle session owns no buffer at all. A bulk flow (a message
 * body) goes socket to pipe to socket with splice(2). Reading from one
 * side stops while the other has RELAY_MAX_OUT queued (backpressure); a
 * FIN is passed on once everything before it was delivered.
 *
 * Inactivity is per side and counts bytes both ways (SPEC.md): a side is
 * active when a byte is read from it, when its socket takes one, and when
 * what it sent is being taken by the other side (a long upload is activity
 * on both sides, and so is a long reply to a slow reader). Bytes that wait
 * in the kernel's send queue count as taken once that queue moves. Each
 * side stamps its last activity; its event's timeout only wakes it to look
 * at the stamps, so progress made from the other side's handler (a write)
 * needs no event change. When a side did time out while the other one
 * holds its bytes unread, the other one is to blame. Every byte relayed is also shown to the session's
 * dialog (smtp/dialog.c), which the verdict on the session reads.
 */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <linux/sockios.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/shm.h"
#include "core/worker/session_int.h"

/* Output queued toward one peer before we stop reading the other. */
#define RELAY_MAX_OUT		(512 * 1024)
/* iovecs per sendmsg(2) of queued bytes. */
#define RELAY_IOV_MAX		64
/* A read this big means a bulk flow (DATA): relay it with splice(2). */
#define RELAY_SPLICE_MIN	(16 * 1024)

/* EV_CLOSED when the backend reports a peer's FIN with its data. */
static short relay_ev_closed = -1;

static void relay_cb_client(evutil_socket_t fd, short what, void *arg);
static void relay_cb_server(evutil_socket_t fd, short what, void *arg);

int64_t
relay_now_us(void)
{
	struct timespec ts;

	/* Coarse is plenty for timeouts in milliseconds, and cheaper. */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* `d` took bytes: activity for it and for the side they came from. */
static void
relay_touch(struct session_side *d)
{
	d->active_us = relay_now_us();
	if (d->peer != NULL)
		d->peer->active_us = d->active_us;
}

void
relay_side_init(struct session_side *d, int fd, unsigned timeout_ms)
{
	d->out = NULL;
	d->fd = fd;
	d->pipe[0] = d->pipe[1] = -1;
	d->piped = 0;
	d->timeout_ms = timeout_ms;
	d->outq = d->peer_outq = 0;
	d->armed = 0;
	d->retime = d->eof = d->shut = d->paused = d->bulk = false;
	d->active_us = relay_now_us();
}

void
relay_side_close(struct session_side *d)
{
	pipepool_put(d);
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

/* A new timeout for a side, counted from now. */
void
relay_set_timeout(struct session_side *d, unsigned ms)
{
	d->timeout_ms = ms;
	d->retime = true;
	d->active_us = relay_now_us();
}

ssize_t
relay_recv(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = recv(fd, buf, len, 0);
	while (n == -1 && errno == EINTR);
	return n;
}

bool
relay_again(void)
{
	return errno == EAGAIN || errno == EWOULDBLOCK;
}

/* Queue bytes behind what a side already waits to write. */
int
relay_queue(struct session_side *d, const void *p, size_t len)
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
int
relay_put(struct session_side *d, const void *p, size_t len)
{
	ssize_t w = 0;

	if (len == 0)
		return 0;
	if (d->out == NULL && d->piped == 0) {
		do
			w = send(d->fd, p, len, MSG_NOSIGNAL);
		while (w == -1 && errno == EINTR);
		if (w == -1) {
			if (!relay_again())
				return -1;
			w = 0;
		}
		if (w > 0)
			relay_touch(d);
	}
	if ((size_t)w < len)
		return relay_queue(d, (const char *)p + w, len - (size_t)w);
	return 0;
}

/* Write what is queued for a side, as far as its socket takes it. */
int
relay_flush(struct session_side *d)
{
	struct evbuffer_iovec v[RELAY_IOV_MAX];
	struct iovec iov[RELAY_IOV_MAX];
	struct msghdr mh;
	bool moved = false;
	size_t total;
	ssize_t w;
	int n, rc = 0;

	while (d->out != NULL) {
		n = evbuffer_peek(d->out, -1, NULL, v, RELAY_IOV_MAX);
		if (n > RELAY_IOV_MAX)
			n = RELAY_IOV_MAX;
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
			rc = relay_again() ? 0 : -1;
			goto out;
		}
		moved |= w > 0;
		evbuffer_drain(d->out, (size_t)w);
		if (evbuffer_get_length(d->out) == 0) {
			evbuffer_free(d->out);
			d->out = NULL;
		} else if ((size_t)w < total) {
			goto out;	/* the socket is full */
		}
	}
	while (d->piped > 0) {
		w = splice(d->pipe[0], NULL, d->fd, NULL, d->piped,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			rc = relay_again() ? 0 : -1;
			goto out;
		}
		if (w == 0)
			goto out;
		moved = true;
		d->piped -= (size_t)w;
	}
	if (d->pipe[0] != -1)
		pipepool_put(d);	/* drained: back to the pool */
out:
	if (moved)
		relay_touch(d);
	return rc;
}

/* ------------------------------------------------------------- events */

/* Events a side waits for in the session's current state. */
static short
relay_want(const struct session *s, const struct session_side *d)
{
	/* Reading always asks for the FIN too: the same events in every
	 * state, so no state change costs an epoll_ctl. */
	short rd = EV_READ | relay_ev_closed;
	short w = d->out != NULL || d->piped > 0 ? EV_WRITE : 0;
	bool client = d == &s->client;

	switch (s->state) {
	case SESSION_HEADER:
		return client ? rd : 0;
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

/* Time left before `d` has been inactive for its whole timeout, or before
 * the phase's deadline when `d` carries it (whichever comes first). */
static struct timeval
relay_time_left(struct session *s, const struct session_side *d)
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
 * Bring a side's event in line with what it waits for. Re-adding costs an
 * epoll_ctl, so it is done only when the events or the timeout changed.
 */
static void
relay_arm(struct session *s, struct session_side *d, event_callback_fn cb)
{
	struct timeval tv;
	bool deadline = session_deadline_side(s) == d;
	short want;

	if (d->fd == -1)
		return;
	want = relay_want(s, d);
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
	tv = relay_time_left(s, d);
	if (event_add(&d->ev, d->timeout_ms > 0 || deadline ? &tv : NULL) ==
	    -1) {
		log_warnx("session: cannot add event");
		return;
	}
	d->armed = want;
}

void
relay_update(struct session *s)
{
	if (relay_ev_closed == -1)
		relay_ev_closed = (event_base_get_features(s->env->base) &
		    EV_FEATURE_EARLY_CLOSE) ? EV_CLOSED : 0;
	relay_arm(s, &s->client, relay_cb_client);
	relay_arm(s, &s->server, relay_cb_server);
}

/* Has the kernel's send queue toward `d` moved since `*seen`, the size
 * the looker noted last time? */
static bool
relay_outq_moved(const struct session_side *d, unsigned *seen)
{
	bool moved;
	int q;

	if (d == NULL || d->fd == -1 || ioctl(d->fd, SIOCOUTQ, &q) == -1)
		return false;
	moved = q > 0 && (unsigned)q != *seen;
	*seen = (unsigned)(q > 0 ? q : 0);
	return moved;
}

/*
 * A side's timeout fired: has it really been inactive that long? Bytes
 * it sent may still be draining into the other side's slow reader, or
 * bytes for it into its own: either queue moving is activity. If not
 * expired, wait for the rest and say no.
 */
bool
relay_expired(struct session *s, struct session_side *d)
{
	struct timeval tv;
	int64_t idle = relay_now_us() - d->active_us;
	bool mine, theirs;

	if (d->timeout_ms == 0 || (session_deadline_side(s) == d &&
	    session_deadline_passed(s)))
		return true;
	if (idle >= (int64_t)d->timeout_ms * 1000) {
		mine = relay_outq_moved(d, &d->outq);
		theirs = relay_outq_moved(d->peer, &d->peer_outq);
		if (!mine && !theirs)
			return true;
		relay_touch(d);
	}
	tv = relay_time_left(s, d);
	if (event_add(&d->ev, &tv) == -1)
		return true;
	return false;
}

/* Does `d` hold bytes it has not taken (queued, piped or in the kernel)? */
static bool
relay_holds_bytes(const struct session_side *d)
{
	int q;

	if (d->fd == -1)
		return false;
	if (d->out != NULL || d->piped > 0)
		return true;
	return ioctl(d->fd, SIOCOUTQ, &q) == 0 && q > 0;
}

/* `d` timed out: blame the other side when it sits on bytes unread. */
static void
relay_timed_out(struct session *s, struct session_side *d)
{
	bool client = d == &s->client;

	if (relay_holds_bytes(d->peer))
		client = !client;
	session_end(s, client ? SESSION_END_CLIENT_TIMEOUT :
	    SESSION_END_SERVER_TIMEOUT, 0);
}

/* -------------------------------------------------------------- relay */

/* A side's socket failed (or reset) while relaying. */
static void
relay_failed(struct session *s, struct session_side *d, int err)
{
	session_side_gone(s, d, err != 0 ? err : EIO);
	session_end(s, d == &s->client ? SESSION_END_CLIENT_GONE :
	    SESSION_END_SERVER_GONE, err != 0 ? err : EIO);
}

/*
 * `a` finished (its FIN is in) or `b` drained: when all of a's bytes have
 * reached b, pass the FIN on. When both ways are done the session ends
 * (close(2) sends the FINs not sent yet). Returns -1 when it ended.
 */
static int
relay_pass_fin(struct session *s, struct session_side *a,
    struct session_side *b)
{
	if (a->eof && !b->shut && b->out == NULL && b->piped == 0) {
		if (b->eof && a->out == NULL && a->piped == 0) {
			session_end(s, SESSION_END_FINISHED, 0);
			return -1;
		}
		(void)shutdown(b->fd, SHUT_WR);
		b->shut = true;
		if (b == &s->client) {
			/* The server is gone: the client has nothing left to
			 * say, only a short while to hang up in. */
			session_deadline(s, relay_now_us(), SESSION_LINGER_MS);
		}
	}
	if (s->client.shut && s->server.shut) {
		session_end(s, SESSION_END_FINISHED, 0);
		return -1;
	}
	return 0;
}

/* `a` sent its FIN. */
static int
relay_eof(struct session *s, struct session_side *a, struct session_side *b)
{
	a->eof = true;
	session_side_gone(s, a, 0);
	if (a == &s->client && s->server.eof && s->client.shut) {
		/* Everything the server said was delivered and it hung up:
		 * the client's FIN ends it. */
		session_end(s, SESSION_END_FINISHED, 0);
		return -1;
	}
	return relay_pass_fin(s, a, b);
}

/* Show relayed bytes to the dialog, by direction. */
static void
relay_seen(struct session *s, const struct session_side *a, const void *p,
    size_t n)
{
	if (a == &s->client)
		dialog_client(&s->dialog, p, n);
	else
		dialog_server(&s->dialog, p, n);
}

/* The same for bytes in one piece, or (p NULL: spliced, or out of
 * memory) by their count only. */
static void
relay_show(struct session *s, const struct session_side *a,
    const unsigned char *p, size_t n)
{
	if (p != NULL)
		relay_seen(s, a, p, n);
	else if (a == &s->client)
		dialog_client_unseen(&s->dialog, n);
	else
		dialog_server_unseen(&s->dialog, n);
}

/* splice(2) from a's socket into b's pipe; -2 when splice cannot work
 * here (then the caller copies, and so does every later session). */
static ssize_t
relay_splice_in(struct session_side *a, struct session_side *b, size_t len)
{
	ssize_t n;

	do
		n = splice(a->fd, NULL, b->pipe[1], NULL, len,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	while (n == -1 && errno == EINTR);
	if (n == -1 && (errno == EINVAL || errno == ENOSYS)) {
		pipepool_put(b);
		pipepool_disable();
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
relay_read(struct session *s, struct session_side *a, struct session_side *b,
    uint64_t *counter, bool closed)
{
	struct evbuffer_iovec v[2];
	struct iovec iov[2];
	size_t want = SESSION_READ_MAX, left;
	ssize_t n;
	int nv;

	/* Splice only what the dialog may miss (a body), so every command
	 * and reply is still seen. */
	if ((b->pipe[0] != -1 || (a->bulk && b->out == NULL &&
	    dialog_may_skip(&s->dialog, a == &s->client))) &&
	    (b->pipe[0] != -1 || pipepool_get(b) == 0) &&
	    (n = relay_splice_in(a, b, want)) != -2) {
		if (n > 0) {
			*counter += (size_t)n;
			b->piped += (size_t)n;
			relay_show(s, a, NULL, (size_t)n);	/* unseen */
			if (relay_flush(b) == -1) {
				relay_failed(s, b, errno);
				return -1;
			}
		}
		/* The pipe's room is not known in bytes: read no more until
		 * b has taken all of it, or a full pipe would spin. */
		if (b->piped > 0)
			a->paused = true;
		else
			pipepool_put(b);
		closed = false;	/* a short splice may be a full pipe */
	} else if (b->out == NULL && b->piped == 0) {
		n = relay_recv(a->fd, session_scratch, want);
		if (n > 0) {
			*counter += (size_t)n;
			relay_seen(s, a, session_scratch, (size_t)n);
			if (relay_put(b, session_scratch, (size_t)n) == -1) {
				relay_failed(s, b, errno);
				return -1;
			}
		}
	} else {
		if (b->out == NULL && (b->out = evbuffer_new()) == NULL) {
			relay_failed(s, b, ENOMEM);
			return -1;
		}
		nv = evbuffer_reserve_space(b->out, (ev_ssize_t)want, v, 2);
		if (nv <= 0) {
			relay_failed(s, b, ENOMEM);
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
				relay_seen(s, a, v[i].iov_base,
				    v[i].iov_len);
			}
			evbuffer_commit_space(b->out, v, nv);
			*counter += (size_t)n;
		}
		if (evbuffer_get_length(b->out) == 0) {
			evbuffer_free(b->out);
			b->out = NULL;
		}
	}
	if (n == -1) {
		if (relay_again())
			return 0;
		relay_failed(s, a, errno);
		return -1;
	}
	if (n > 0)
		a->active_us = relay_now_us();
	a->bulk = (size_t)n >= RELAY_SPLICE_MIN;
	if (b->out != NULL && evbuffer_get_length(b->out) >= RELAY_MAX_OUT)
		a->paused = true;	/* backpressure: until b drains half */
	if (n == 0 || (closed && (size_t)n < want))
		return relay_eof(s, a, b);
	return 0;
}

/* `b`'s socket is writable again: drain its queue. */
static int
relay_write(struct session *s, struct session_side *b, struct session_side *a)
{
	if (relay_flush(b) == -1) {
		relay_failed(s, b, errno);
		return -1;
	}
	if (a->paused && b->piped == 0 && (b->out == NULL ||
	    evbuffer_get_length(b->out) <= RELAY_MAX_OUT / 2))
		a->paused = false;
	return relay_pass_fin(s, a, b);
}

/*
 * The gate is passed (or there is none): the greeting (what the gate
 * queued toward the client, then `p`) goes out, then the early client bytes
 * after the PROXY header. Returns -1 when the session ended.
 */
int
relay_begin(struct session *s, const char *p, size_t n)
{
	struct session_side *c = &s->client, *sv = &s->server;
	size_t len;

	s->state = SESSION_RELAY;
	s->deadline_us = 0;
	shm_server_count_session(session_server_slot(s));
	/* Implicit TLS has no gate: the client speaks first. */
	if (s->listener->cfg->mode == CFG_MODE_SMTP)
		metrics_count_first_line(session_server_slot(s),
		    net_now_us() - s->t_connect);
	relay_set_timeout(sv, s->pool->cfg->server_timeout_ms);
	/* What the gate queued (at most a first line, the client's early
	 * bytes at most 4 KiB) is shown to the dialog in one piece. */
	if (c->out != NULL) {
		len = evbuffer_get_length(c->out);
		s->bytes_out += len;
		relay_show(s, c->peer, evbuffer_pullup(c->out, -1), len);
		if (relay_flush(c) == -1)
			goto client_failed;
	}
	s->bytes_out += n;
	dialog_server(&s->dialog, p, n);
	if (relay_put(c, p, n) == -1)
		goto client_failed;
	if (s->hold != NULL) {
		len = evbuffer_get_length(s->hold);
		s->bytes_in += len;
		relay_show(s, &s->client, evbuffer_pullup(s->hold, -1), len);
		if (sv->out == NULL) {
			sv->out = s->hold;
		} else if (evbuffer_add_buffer(sv->out, s->hold) == -1) {
			evbuffer_free(s->hold);
			s->hold = NULL;
			relay_failed(s, sv, ENOMEM);
			return -1;
		} else {
			evbuffer_free(s->hold);
		}
		s->hold = NULL;
		if (relay_flush(sv) == -1) {
			relay_failed(s, sv, errno);
			return -1;
		}
	}
	relay_update(s);
	return 0;
client_failed:
	relay_failed(s, c, errno);
	return -1;
}

void
relay_on_client(struct session *s, short what)
{
	struct session_side *c = &s->client;

	if (what & EV_TIMEOUT) {
		if (relay_expired(s, c))
			relay_timed_out(s, c);
		return;
	}
	if ((what & EV_WRITE) && relay_write(s, c, &s->server) == -1)
		return;
	if ((what & (EV_READ | EV_CLOSED)) && !c->eof && !c->paused &&
	    relay_read(s, c, &s->server, &s->bytes_in,
	    (what & EV_CLOSED) != 0) == -1)
		return;
	relay_update(s);
}

void
relay_on_server(struct session *s, short what)
{
	struct session_side *sv = &s->server;

	if (what & EV_TIMEOUT) {
		if (relay_expired(s, sv))
			relay_timed_out(s, sv);
		return;
	}
	if ((what & EV_WRITE) && relay_write(s, sv, &s->client) == -1)
		return;
	if ((what & (EV_READ | EV_CLOSED)) && !sv->eof && !sv->paused &&
	    relay_read(s, sv, &s->client, &s->bytes_out,
	    (what & EV_CLOSED) != 0) == -1)
		return;
	relay_update(s);
}

/* ------------------------------------------------------------ dispatch */

static void
relay_cb_client(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	switch (s->state) {
	case SESSION_HEADER:
		upstream_on_client(s, what);
		return;
	case SESSION_CONNECTING:
	case SESSION_GATE:
		gate_on_client(s, what);
		return;
	case SESSION_RELAY:
		relay_on_client(s, what);
		return;
	case SESSION_CLOSING:
		session_on_closing(s, what);
		return;
	}
}

static void
relay_cb_server(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	switch (s->state) {
	case SESSION_HEADER:
		return;		/* no server yet */
	case SESSION_CONNECTING:
	case SESSION_GATE:
		gate_on_server(s, what);
		return;
	case SESSION_RELAY:
		relay_on_server(s, what);
		return;
	case SESSION_CLOSING:
		return;		/* no server any more */
	}
}
