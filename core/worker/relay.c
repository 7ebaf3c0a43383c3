/* SPDX-License-Identifier: MIT */
/*
 * relay: the pump between a session's two sockets. session.c watches them
 * (one persistent `struct event` each, embedded in the session) and hands
 * every event of the relay phase here; the pump moves bytes, passes FINs
 * and reports by flags on the sides (`eof`, `shut`, `err`) and its return
 * code; it never ends a session nor changes its phase. Relayed bytes are
 * read into one scratch buffer per process and written straight to the
 * peer; only what a socket does not take is queued (an evbuffer that
 * exists while it holds bytes), so an idle session owns no buffer at all.
 * A bulk flow (a message body) goes socket to pipe to socket with
 * splice(2). Reading from one side stops while the other has RELAY_MAX_OUT
 * (48 KiB) queued (backpressure); a FIN is passed on once everything
 * before it was delivered.
 *
 * Inactivity is per side and counts bytes both ways (SPEC.md): a side is
 * active when a byte is read from it, when its socket takes one, and when
 * what it sent is being taken by the other side (a long upload is activity
 * on both sides, and so is a long reply to a slow reader). Bytes that wait
 * in the kernel's send queue count as taken once that queue moves. Each
 * side stamps its last activity; its event's timeout only wakes it to look
 * at the stamps, so progress made from the other side's handler (a write)
 * needs no event change. When a side did time out while the other one
 * holds its bytes unread, the other one is to blame (relay_blame). Every
 * byte relayed is also shown to the session's dialog (smtp/dialog.c),
 * which the verdict on the session reads.
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

/*
 * Bytes queued toward one side outside splice, at most (SPEC.md "Bounds":
 * 64 KiB): reading the other side stops there, and no read reserves room
 * beyond it, so a peer that never reads costs no more than this. The
 * queue is kept in chains of RELAY_CHAIN bytes: the last one partly
 * filled, the memory it takes stays within 64 KiB.
 */
#define RELAY_MAX_OUT		(48 * 1024)
/* Bytes added to a queue at once: libevent rounds a chain (with its
 * header) up to a power of two, 16 KiB here. */
#define RELAY_CHAIN		(16 * 1024 - 512)
/* iovecs per sendmsg(2) of queued bytes. */
#define RELAY_IOV_MAX		64
/* A read this big means a bulk flow (DATA): relay it with splice(2). */
#define RELAY_SPLICE_MIN	(16 * 1024)


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
	d->stalled = false;
	d->err = 0;
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
	d->stalled = false;
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
	size_t k;

	if (d->out == NULL && (d->out = evbuffer_new()) == NULL)
		goto nomem;
	for (; len > 0; len -= k, p = (const char *)p + k) {
		k = len < RELAY_CHAIN ? len : RELAY_CHAIN;
		if (evbuffer_add(d->out, p, k) == -1)
			goto nomem;
	}
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
	int64_t idle = relay_now_us() - d->active_us;
	bool mine, theirs;

	if (d->timeout_ms == 0)
		return true;
	if (idle >= (int64_t)d->timeout_ms * 1000) {
		mine = relay_outq_moved(d, &d->outq);
		theirs = relay_outq_moved(d->peer, &d->peer_outq);
		if (!mine && !theirs)
			return true;
		relay_touch(d);
	}
	d->retime = true;	/* wait for the rest */
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

struct session_side *
relay_blame(struct session *s, struct session_side *d)
{
	return relay_holds_bytes(d->peer) ? d->peer : d;
}

/* -------------------------------------------------------------- relay */

/* A side's socket failed (or reset): raise its flag for the session. */
static int
relay_fail(struct session_side *d, int err)
{
	d->err = (short)(err != 0 ? err : EIO);
	return -1;
}

/*
 * `a` finished (its FIN is in) or `b` drained: when all of a's bytes have
 * reached b, pass the FIN on. Returns 1 when both ways are done (close(2)
 * then sends the FINs not sent yet).
 */
static int
relay_pass_fin(struct session *s, struct session_side *a,
    struct session_side *b)
{
	if (a->eof && !b->shut && b->out == NULL && b->piped == 0) {
		if (b->eof && a->out == NULL && a->piped == 0)
			return 1;
		(void)shutdown(b->fd, SHUT_WR);
		b->shut = true;
	}
	return s->client.shut && s->server.shut ? 1 : 0;
}

/* `a` sent its FIN. */
static int
relay_eof(struct session *s, struct session_side *a, struct session_side *b)
{
	a->eof = true;
	if (a == &s->client && s->server.eof && s->client.shut) {
		/* Everything the server said was delivered and it hung up:
		 * the client's FIN ends it. */
		return 1;
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
 * as relay_pump() does.
 */
static int
relay_read(struct session *s, struct session_side *a, struct session_side *b,
    uint64_t *counter, bool closed)
{
	struct evbuffer_iovec v[2];
	struct iovec iov[2];
	size_t want = SESSION_READ_MAX, left, queued;
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
			if (relay_flush(b) == -1)
				return relay_fail(b, errno);
		}
		/* The pipe's room is not known in bytes: read no more until
		 * b has taken all of it, or a full pipe would spin. */
		if (b->piped > 0)
			a->paused = true;
		else
			pipepool_put(b);
		closed = false;	/* a short splice may be a full pipe */
	} else if (b->out == NULL && b->piped == 0) {
		want = RELAY_MAX_OUT;	/* what b does not take is queued */
		n = relay_recv(a->fd, session_scratch, want);
		if (n > 0) {
			*counter += (size_t)n;
			relay_seen(s, a, session_scratch, (size_t)n);
			if (relay_put(b, session_scratch, (size_t)n) == -1)
				return relay_fail(b, errno);
		}
	} else {
		if (b->out == NULL && (b->out = evbuffer_new()) == NULL)
			return relay_fail(b, ENOMEM);
		queued = evbuffer_get_length(b->out);
		if (queued >= RELAY_MAX_OUT) {
			a->paused = true;	/* cannot happen: paused before */
			return 0;
		}
		want = RELAY_MAX_OUT - queued;
		if (want > RELAY_CHAIN)
			want = RELAY_CHAIN;
		nv = evbuffer_reserve_space(b->out, (ev_ssize_t)want, v, 2);
		if (nv <= 0)
			return relay_fail(b, ENOMEM);
		/* The reservation may offer more than asked: take no more
		 * than the cap leaves. */
		left = want;
		for (int i = 0; i < nv; i++) {
			if (v[i].iov_len > left)
				v[i].iov_len = left;
			left -= v[i].iov_len;
			iov[i].iov_base = v[i].iov_base;
			iov[i].iov_len = v[i].iov_len;
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
		return relay_fail(a, errno);
	}
	if (n > 0)
		a->active_us = relay_now_us();
	a->bulk = (size_t)n >= RELAY_SPLICE_MIN;
	if (b->out != NULL && evbuffer_get_length(b->out) >= RELAY_MAX_OUT) {
		a->paused = true;	/* backpressure: until b drains half */
		/* A client that does not read its replies gets no more
		 * commands read either: each would only add a reply, and
		 * the server's side would fill instead (a pipelining client
		 * reads as it writes, RFC 2920). A message body still flows. */
		if (b == &s->client && !dialog_in_message(&s->dialog) &&
		    !dialog_opaque(&s->dialog))
			b->stalled = true;
	}
	if (n == 0 || (closed && (size_t)n < want))
		return relay_eof(s, a, b);
	return 0;
}

/* `b`'s socket is writable again: drain its queue. */
static int
relay_write(struct session *s, struct session_side *b, struct session_side *a)
{
	if (relay_flush(b) == -1)
		return relay_fail(b, errno);
	if (b->piped == 0 && (b->out == NULL ||
	    evbuffer_get_length(b->out) <= RELAY_MAX_OUT / 2))
		a->paused = b->stalled = false;
	return relay_pass_fin(s, a, b);
}

int
relay_begin(struct session *s, const char *p, size_t n)
{
	struct session_side *c = &s->client, *sv = &s->server;
	size_t len;

	/* What the gate queued (at most a first line, the client's early
	 * bytes at most 4 KiB) is shown to the dialog in one piece. */
	if (c->out != NULL) {
		len = evbuffer_get_length(c->out);
		s->bytes_out += len;
		relay_show(s, c->peer, evbuffer_pullup(c->out, -1), len);
		if (relay_flush(c) == -1)
			return relay_fail(c, errno);
	}
	s->bytes_out += n;
	dialog_server(&s->dialog, p, n);
	if (relay_put(c, p, n) == -1)
		return relay_fail(c, errno);
	if (s->pre->hold != NULL) {
		len = evbuffer_get_length(s->pre->hold);
		s->bytes_in += len;
		relay_show(s, &s->client, evbuffer_pullup(s->pre->hold, -1), len);
		if (sv->out == NULL) {
			sv->out = s->pre->hold;
		} else if (evbuffer_add_buffer(sv->out, s->pre->hold) == -1) {
			evbuffer_free(s->pre->hold);
			s->pre->hold = NULL;
			return relay_fail(sv, ENOMEM);
		} else {
			evbuffer_free(s->pre->hold);
		}
		s->pre->hold = NULL;
		if (relay_flush(sv) == -1)
			return relay_fail(sv, errno);
	}
	return 0;
}

int
relay_pump(struct session *s, struct session_side *d, short what)
{
	struct session_side *peer = d->peer;
	uint64_t *counter = d == &s->client ? &s->bytes_in : &s->bytes_out;
	int rc;

	if ((what & EV_WRITE) && (rc = relay_write(s, d, peer)) != 0)
		return rc;
	if ((what & (EV_READ | EV_CLOSED)) && !d->eof && !d->paused &&
	    !d->stalled)
		return relay_read(s, d, peer, counter,
		    (what & EV_CLOSED) != 0);
	return 0;
}
