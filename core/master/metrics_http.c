/* SPDX-License-Identifier: MIT */
/*
 * metrics_http: the metrics endpoint on evhttp. evhttp (libevent 2.1) has
 * no hook when it accepts a connection or frees one, so the bound on
 * connections is kept here: evhttp asks us for each new connection's
 * bufferevent (evhttp_set_bevcb), and right after the accept, before any
 * of its callbacks can run, a top-priority event notes the connection's
 * socket (descriptor and inode, so a reused descriptor is never mistaken
 * for it). A connection is over when its descriptor no longer names that
 * socket. To end one (no room, or past its deadline) its socket is shut
 * down: evhttp sees the end and frees it as for any client that left.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "config/value.h"
#include "core/log.h"
#include "core/master/metrics_http.h"
#include "core/net.h"
#include "core/prom.h"

/* evhttp's own bounds: inactivity while reading or writing, and sizes. */
#define MH_TIMEOUT_S		5
#define MH_MAX_HEADERS		8192
#define MH_MAX_BODY		4096
#define MH_SWEEP_MS		250
#define MH_EMFILE_PAUSE_MS	100
#define MH_WARN_EVERY_S		10

struct mh_conn {
	int fd;
	dev_t dev;
	ino_t ino;
	int64_t since_us;
	bool requested;			/* its request came (it is answered) */
	bool ended;			/* shut down by us: closing */
};

enum mh_next {
	MH_NEXT_NONE,			/* nothing prepared */
	MH_NEXT_KEEP,			/* the address served now */
	MH_NEXT_NEW,			/* next_fd, bound to next_addr */
	MH_NEXT_OFF,			/* no metrics */
};

struct metrics_http {
	struct event_base *base;
	metrics_http_render_fn render;
	void *arg;
	struct evhttp *http;		/* NULL: not serving */
	struct evhttp_bound_socket *bound;
	struct cfg_addr addr;		/* served */
	enum mh_next next;
	int next_fd;
	struct cfg_addr next_addr;
	int inherit_fd;			/* handed over at an upgrade, or -1 */
	bool accepting;			/* the listener is enabled */
	/* Twice the bound: those we ended may still be closing. */
	struct mh_conn conns[2 * METRICS_HTTP_MAX_CONNS];
	size_t nconns;
	struct bufferevent *pending[METRICS_HTTP_MAX_CONNS];
	size_t npending;
	/* GET /metrics requests waiting for the render event, oldest first. */
	struct {
		struct evhttp_request *req;
		struct evhttp_connection *evcon;
	} waiting[METRICS_HTTP_MAX_CONNS];
	size_t nwaiting;
	struct event *render_ev;
	struct event *post_ev;		/* notes pending connections */
	struct event *sweep_ev;
	struct event *resume_ev;	/* accepting paused (out of fds) */
	struct event *warn_ev;
	/* Crowding, reported at most every MH_WARN_EVERY_S. */
	unsigned evicted, expired, paused;
	int64_t warned_us;
};

/* The endpoint being served, for the listener's error callback (which
 * gets evhttp's pointer): one per process, the master's. */
static struct metrics_http *mh_self;

static void mh_accepting(struct metrics_http *h, bool on);

/* ------------------------------------------------------------ crowding */

static void
mh_warn(struct metrics_http *h)
{
	int64_t now = net_now_us();
	int64_t next = h->warned_us + (int64_t)MH_WARN_EVERY_S * 1000000;

	if (h->evicted + h->expired + h->paused == 0)
		return;
	if (h->warned_us != 0 && now < next) {
		/* Said at the end of the quiet time, whatever comes. */
		if (!evtimer_pending(h->warn_ev, NULL)) {
			struct timeval tv = { (next - now) / 1000000,
			    (next - now) % 1000000 };

			evtimer_add(h->warn_ev, &tv);
		}
		return;
	}
	log_warnx("metrics: crowded (at most %d connections, %d s each): %u "
	    "idle connection(s) closed to make room, %u closed at their "
	    "deadline, accepting paused %u time(s) for lack of descriptors "
	    "(next report in %d s at the earliest)", METRICS_HTTP_MAX_CONNS,
	    METRICS_HTTP_DEADLINE_MS / 1000, h->evicted, h->expired, h->paused,
	    MH_WARN_EVERY_S);
	h->evicted = h->expired = h->paused = 0;
	h->warned_us = now;
}

static void
mh_on_warn(evutil_socket_t fd, short what, void *arg)
{
	mh_warn(arg);
}

/* ------------------------------------------------------------ connections */

/* Is the connection's socket still open (under the same descriptor)? */
static bool
mh_conn_alive(const struct mh_conn *c)
{
	struct stat st;

	return fstat(c->fd, &st) == 0 && st.st_dev == c->dev &&
	    st.st_ino == c->ino;
}

static void
mh_conn_end(struct mh_conn *c)
{
	if (!c->ended && mh_conn_alive(c))
		(void)shutdown(c->fd, SHUT_RDWR);
	c->ended = true;
}

/* Forget the connections that are over. */
static void
mh_prune(struct metrics_http *h)
{
	for (size_t i = 0; i < h->nconns; ) {
		if (mh_conn_alive(&h->conns[i])) {
			i++;
			continue;
		}
		h->conns[i] = h->conns[--h->nconns];
	}
}

/* Room for the next connection: end the oldest one that has not sent its
 * request (an idle scraper must not lock Prometheus out). */
static void
mh_make_room(struct metrics_http *h)
{
	struct mh_conn *oldest = NULL;
	size_t live = 0;

	for (size_t i = 0; i < h->nconns; i++) {
		struct mh_conn *c = &h->conns[i];

		if (c->ended)
			continue;
		live++;
		if (!c->requested && (oldest == NULL ||
		    c->since_us < oldest->since_us))
			oldest = c;
	}
	if (live + h->npending < METRICS_HTTP_MAX_CONNS || oldest == NULL)
		return;
	mh_conn_end(oldest);
	h->evicted++;
}

/* Connections not ended by us (those are closing). */
static size_t
mh_live(const struct metrics_http *h)
{
	size_t n = 0;

	for (size_t i = 0; i < h->nconns; i++)
		n += !h->conns[i].ended;
	return n;
}

static struct mh_conn *
mh_conn_by_fd(struct metrics_http *h, int fd)
{
	for (size_t i = 0; i < h->nconns; i++)
		if (h->conns[i].fd == fd && !h->conns[i].ended)
			return &h->conns[i];
	return NULL;
}

/* After an accept, before the connection's callbacks run: note it. */
static void
mh_on_post(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;
	int64_t now = net_now_us();

	mh_prune(h);
	for (size_t i = 0; i < h->npending; i++) {
		struct bufferevent *bev = h->pending[i];
		bufferevent_event_cb eventcb = NULL;
		int s = bufferevent_getfd(bev);
		struct mh_conn *c;
		struct stat st;

		/* evhttp frees a connection's bufferevent by clearing its
		 * callbacks first: such a one is not a connection any more. */
		bufferevent_getcb(bev, NULL, NULL, &eventcb, NULL);
		if (eventcb == NULL || s < 0 || fstat(s, &st) == -1) {
			bufferevent_decref(bev);
			continue;
		}
		bufferevent_decref(bev);
		/* A descriptor we still list belongs to this one now. */
		while ((c = mh_conn_by_fd(h, s)) != NULL)
			*c = h->conns[--h->nconns];
		if (h->nconns == 2 * METRICS_HTTP_MAX_CONNS) {
			/* Only when many were ended and are still closing:
			 * accepting stops before the bound otherwise. */
			(void)shutdown(s, SHUT_RDWR);
			continue;
		}
		c = &h->conns[h->nconns++];
		memset(c, 0, sizeof(*c));
		c->fd = s;
		c->dev = st.st_dev;
		c->ino = st.st_ino;
		c->since_us = now;
	}
	h->npending = 0;
	mh_make_room(h);
	mh_accepting(h, mh_live(h) < METRICS_HTTP_MAX_CONNS);
	if (h->nconns > 0 && !evtimer_pending(h->sweep_ev, NULL)) {
		struct timeval tv = { 0, MH_SWEEP_MS * 1000 };

		evtimer_add(h->sweep_ev, &tv);
	}
	mh_warn(h);
}

/* Every MH_SWEEP_MS while connections are open: forget those that are
 * over, end those past their deadline, accept again when there is room. */
static void
mh_on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;
	int64_t now = net_now_us();
	struct timeval tv = { 0, MH_SWEEP_MS * 1000 };

	mh_prune(h);
	for (size_t i = 0; i < h->nconns; i++) {
		struct mh_conn *c = &h->conns[i];

		if (c->ended || now - c->since_us <
		    (int64_t)METRICS_HTTP_DEADLINE_MS * 1000)
			continue;
		log_debug("metrics: closing a connection after %d s",
		    METRICS_HTTP_DEADLINE_MS / 1000);
		mh_conn_end(c);
		h->expired++;
	}
	if (h->http != NULL && !evtimer_pending(h->resume_ev, NULL))
		mh_accepting(h, mh_live(h) < METRICS_HTTP_MAX_CONNS);
	if (h->nconns > 0)
		evtimer_add(h->sweep_ev, &tv);
	mh_warn(h);
}

/* evhttp makes a connection: its bufferevent, noted for mh_on_post.
 * (Its events cannot be given a priority: evhttp sets the socket after
 * this, which assigns them afresh; the work is in mh_on_render.) */
static struct bufferevent *
mh_bevcb(struct event_base *base, void *arg)
{
	struct metrics_http *h = arg;
	struct bufferevent *bev;

	bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL;		/* evhttp makes one; not counted */
	if (h->npending < METRICS_HTTP_MAX_CONNS) {
		/* Kept alive for mh_on_post even if evhttp gives up on the
		 * connection first (out of memory). */
		bufferevent_incref(bev);
		h->pending[h->npending++] = bev;
	}
	event_active(h->post_ev, EV_TIMEOUT, 0);
	/* The listener accepts in a loop: stop it at the bound. */
	if (mh_live(h) + h->npending >= METRICS_HTTP_MAX_CONNS)
		mh_accepting(h, false);
	return bev;
}

/* ------------------------------------------------------------ requests */

static void
mh_reply(struct evhttp_request *req, int code, const char *reason,
    const char *text)
{
	struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
	struct evbuffer *body = evbuffer_new();

	evhttp_add_header(hdr, "Content-Type", "text/plain; charset=utf-8");
	evhttp_add_header(hdr, "Connection", "close");
	if (code == HTTP_BADMETHOD)
		evhttp_add_header(hdr, "Allow", "GET");
	if (body != NULL)
		evbuffer_add_printf(body, "%s\n", text);
	evhttp_send_reply(req, code, reason, body);
	if (body != NULL)
		evbuffer_free(body);
}

/* The render event runs at the next turn of the loop. */
static void
mh_render_soon(struct metrics_http *h)
{
	struct timeval now = { 0, 0 };

	if (h->nwaiting > 0 && !evtimer_pending(h->render_ev, NULL))
		evtimer_add(h->render_ev, &now);
}

/* A connection with a request waiting went away: forget the request
 * (evhttp frees it). */
static void
mh_on_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct metrics_http *h = arg;

	for (size_t i = 0; i < h->nwaiting; i++) {
		if (h->waiting[i].evcon != evcon)
			continue;
		memmove(&h->waiting[i], &h->waiting[i + 1],
		    (h->nwaiting - i - 1) * sizeof(h->waiting[0]));
		h->nwaiting--;
		return;
	}
}

/*
 * Answer the oldest request waiting. One exposition per turn of the
 * loop, at the endpoint's low priority: whatever else is ready (a
 * signal, a child, a control client) runs before the next one.
 */
static void
mh_on_render(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;
	struct evhttp_request *req;
	struct evkeyvalq *hdr;
	struct evbuffer *body;

	if (h->nwaiting == 0)
		return;
	req = h->waiting[0].req;
	evhttp_connection_set_closecb(h->waiting[0].evcon, NULL, NULL);
	memmove(&h->waiting[0], &h->waiting[1],
	    (h->nwaiting - 1) * sizeof(h->waiting[0]));
	h->nwaiting--;
	mh_render_soon(h);
	if ((body = evbuffer_new()) == NULL) {
		mh_reply(req, HTTP_SERVUNAVAIL, "Service Unavailable",
		    "out of memory");
		return;
	}
	h->render(body, h->arg);
	hdr = evhttp_request_get_output_headers(req);
	evhttp_add_header(hdr, "Content-Type", PROM_CONTENT_TYPE);
	evhttp_add_header(hdr, "Connection", "close");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static void
mh_on_request(struct evhttp_request *req, void *arg)
{
	struct metrics_http *h = arg;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	struct mh_conn *c;

	if (evcon != NULL && (c = mh_conn_by_fd(h, bufferevent_getfd(
	    evhttp_connection_get_bufferevent(evcon)))) != NULL)
		c->requested = true;
	if (path == NULL || strcmp(path, "/metrics") != 0) {
		mh_reply(req, HTTP_NOTFOUND, "Not Found",
		    "not found: smtpfront serves GET /metrics only");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		mh_reply(req, HTTP_BADMETHOD, "Method Not Allowed",
		    "method not allowed: smtpfront serves GET /metrics only");
		return;
	}
	if (evcon == NULL || h->nwaiting == METRICS_HTTP_MAX_CONNS) {
		/* Cannot happen: one request per connection. */
		mh_reply(req, HTTP_SERVUNAVAIL, "Service Unavailable",
		    "too many requests");
		return;
	}
	/* Answered from the render event, one per turn of the loop. */
	h->waiting[h->nwaiting].req = req;
	h->waiting[h->nwaiting].evcon = evcon;
	h->nwaiting++;
	evhttp_connection_set_closecb(evcon, mh_on_conn_closed, h);
	mh_render_soon(h);
}

/* ------------------------------------------------------------ listener */

static struct evconnlistener *
mh_listener(struct metrics_http *h)
{
	return h->bound != NULL ? evhttp_bound_socket_get_listener(h->bound) :
	    NULL;
}

static void
mh_accepting(struct metrics_http *h, bool on)
{
	struct evconnlistener *l = mh_listener(h);

	if (l == NULL || on == h->accepting)
		return;
	if (on ? evconnlistener_enable(l) : evconnlistener_disable(l))
		return;
	h->accepting = on;
}

static void
mh_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;

	mh_accepting(h, mh_live(h) < METRICS_HTTP_MAX_CONNS);
}

/* accept(2) failed for another reason than "nothing to accept". */
static void
mh_on_accept_error(struct evconnlistener *l, void *arg)
{
	struct metrics_http *h = mh_self;
	struct timeval tv = { 0, MH_EMFILE_PAUSE_MS * 1000 };
	int e = errno;

	if (h == NULL)
		return;
	if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
		log_warnx("metrics: accept: %s", strerror(e));
		return;
	}
	/* The socket stays readable: watching it now would spin. */
	mh_accepting(h, false);
	evtimer_add(h->resume_ev, &tv);
	h->paused++;
	mh_warn(h);
}

static void
mh_stop(struct metrics_http *h)
{
	for (size_t i = 0; i < h->npending; i++)
		bufferevent_decref(h->pending[i]);
	h->npending = 0;
	/* evhttp frees the requests with their connections. */
	for (size_t i = 0; i < h->nwaiting; i++)
		evhttp_connection_set_closecb(h->waiting[i].evcon, NULL, NULL);
	h->nwaiting = 0;
	if (h->render_ev != NULL)
		evtimer_del(h->render_ev);
	if (h->http != NULL)
		evhttp_free(h->http);	/* its connections and socket too */
	h->http = NULL;
	h->bound = NULL;
	h->accepting = false;
	h->nconns = h->npending = 0;
	if (mh_self == h)
		mh_self = NULL;
	event_del(h->post_ev);
	evtimer_del(h->sweep_ev);
	evtimer_del(h->resume_ev);
}

static struct evhttp *
mh_evhttp(struct metrics_http *h)
{
	struct evhttp *http = evhttp_new(h->base);

	if (http == NULL)
		return NULL;
	evhttp_set_timeout(http, MH_TIMEOUT_S);
	evhttp_set_max_headers_size(http, MH_MAX_HEADERS);
	evhttp_set_max_body_size(http, MH_MAX_BODY);
	/* Every method reaches us, so that all but GET get the same 405
	 * (evhttp answers the ones it does not allow with a 501). */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
	    EVHTTP_REQ_PATCH);
	evhttp_set_gencb(http, mh_on_request, h);
	evhttp_set_bevcb(http, mh_bevcb, h);
	return http;
}

/* ------------------------------------------------------------ lifecycle */

struct metrics_http *
metrics_http_new(struct event_base *base, metrics_http_render_fn render,
    void *arg)
{
	struct metrics_http *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->base = base;
	h->render = render;
	h->arg = arg;
	h->next_fd = -1;
	h->inherit_fd = -1;
	h->post_ev = event_new(base, -1, 0, mh_on_post, h);
	h->sweep_ev = evtimer_new(base, mh_on_sweep, h);
	h->resume_ev = evtimer_new(base, mh_on_resume, h);
	h->warn_ev = evtimer_new(base, mh_on_warn, h);
	h->render_ev = evtimer_new(base, mh_on_render, h);
	if (h->post_ev == NULL || h->sweep_ev == NULL || h->resume_ev == NULL ||
	    h->warn_ev == NULL || h->render_ev == NULL ||
	    event_priority_set(h->post_ev, 0) == -1 ||
	    event_priority_set(h->render_ev, METRICS_HTTP_PRIORITY) == -1) {
		metrics_http_free(h);
		return NULL;
	}
	return h;
}

void
metrics_http_free(struct metrics_http *h)
{
	if (h == NULL)
		return;
	metrics_http_abandon(h);
	if (h->post_ev != NULL)
		mh_stop(h);
	if (h->post_ev != NULL)
		event_free(h->post_ev);
	if (h->sweep_ev != NULL)
		event_free(h->sweep_ev);
	if (h->resume_ev != NULL)
		event_free(h->resume_ev);
	if (h->warn_ev != NULL)
		event_free(h->warn_ev);
	if (h->render_ev != NULL)
		event_free(h->render_ev);
	free(h);
}

int
metrics_http_prepare(struct metrics_http *h, const struct cfg_addr *bind,
    char *err, size_t cap)
{
	metrics_http_abandon(h);
	if (bind == NULL) {
		h->next = MH_NEXT_OFF;
		return 0;
	}
	if (h->http != NULL && cfg_addr_equal(&h->addr, bind)) {
		h->next = MH_NEXT_KEEP;
		return 0;
	}
	h->next_fd = -1;
	if (h->inherit_fd != -1) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (getsockname(h->inherit_fd, (struct sockaddr *)&ss,
		    &len) == 0 && net_sockaddr_equal(&ss, &bind->ss))
			h->next_fd = h->inherit_fd;
		else
			close(h->inherit_fd);
		h->inherit_fd = -1;
	}
	if (h->next_fd == -1)
		h->next_fd = net_listen(bind);
	if (h->next_fd == -1) {
		snprintf(err, cap, "metrics: cannot listen on %s: %s%s",
		    bind->text, strerror(errno), errno == EACCES ?
		    " (a port below 1024 needs root or "
		    "CAP_NET_BIND_SERVICE)" : "");
		return -1;
	}
	h->next_addr = *bind;
	h->next = MH_NEXT_NEW;
	return 0;
}

int
metrics_http_fd(const struct metrics_http *h)
{
	return h->bound != NULL ? evhttp_bound_socket_get_fd(h->bound) : -1;
}

void
metrics_http_inherit(struct metrics_http *h, int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl != -1)
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	h->inherit_fd = fd;
}

void
metrics_http_abandon(struct metrics_http *h)
{
	if (h->next_fd != -1)
		close(h->next_fd);
	h->next_fd = -1;
	h->next = MH_NEXT_NONE;
}

void
metrics_http_commit(struct metrics_http *h)
{
	enum mh_next next = h->next;
	int fd = h->next_fd;

	h->next = MH_NEXT_NONE;
	h->next_fd = -1;
	switch (next) {
	case MH_NEXT_NONE:
	case MH_NEXT_KEEP:
		return;
	case MH_NEXT_OFF:
		if (h->http != NULL)
			log_info("metrics: no longer listening on %s",
			    h->addr.text);
		mh_stop(h);
		return;
	case MH_NEXT_NEW:
		break;
	}
	if (h->http == NULL && (h->http = mh_evhttp(h)) == NULL) {
		log_warnx("metrics: out of memory: not serving %s",
		    h->next_addr.text);
		close(fd);
		return;
	}
	if (h->bound != NULL) {
		log_info("metrics: no longer listening on %s", h->addr.text);
		evhttp_del_accept_socket(h->http, h->bound);	/* closes it */
		h->bound = NULL;
	}
	h->bound = evhttp_accept_socket_with_handle(h->http, fd);
	if (h->bound == NULL) {
		log_warnx("metrics: cannot serve %s", h->next_addr.text);
		close(fd);
		mh_stop(h);
		return;
	}
	h->addr = h->next_addr;
	h->accepting = true;
	mh_self = h;
	evconnlistener_set_error_cb(mh_listener(h), mh_on_accept_error);
	mh_accepting(h, mh_live(h) < METRICS_HTTP_MAX_CONNS);
	log_info("metrics: listening on %s (GET /metrics)", h->addr.text);
}
