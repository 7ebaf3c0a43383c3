/* SPDX-License-Identifier: MIT */
/*
 * worker: a forked, unprivileged process with one libevent loop. It accepts
 * on the listening sockets it shares with its siblings and hands each
 * connection to a session. SIGTERM (or the master's pipe closing) stops
 * accepting at once and lets sessions finish up to shutdown_timeout.
 *
 * The listening sockets are watched through an epoll set of their own with
 * EPOLLEXCLUSIVE (libevent 2.1 cannot ask for it), itself watched by the
 * event loop: a new connection wakes one worker, not all of them (which
 * cost every other worker an accept4() returning EAGAIN per connection).
 * Without EPOLLEXCLUSIVE each socket gets a libevent event of its own.
 */
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "balancer/balancer.h"
#include "core/child.h"
#include "core/log.h"
#include "core/net.h"
#include "core/session.h"
#include "core/shm.h"
#include "core/worker.h"

/* Connections taken per wakeup: bounded so one busy listener cannot
 * starve the sessions already running. */
#define WORKER_ACCEPT_BATCH 32
#define WORKER_EMFILE_PAUSE_MS 100

struct worker;

struct worker_listen {
	struct worker *w;
	struct event *ev;
	const struct rt_listener *listener;
	const struct rt_bind *bind;
};

struct worker {
	struct event_base *base;
	const struct runtime *rt;
	struct session_env env;
	struct worker_listen *listens;
	size_t nlistens;
	int lepfd;			/* epoll set of the listeners, or -1 */
	struct event *lep_ev;		/* watches lepfd */
	struct child_events ce;
	struct event *stop_timer;
	struct event *resume_timer;
	bool stopping;
};

static void
worker_exit_if_idle(struct worker *w)
{
	if (w->stopping && w->env.nsessions == 0)
		event_base_loopbreak(w->base);
}

static void
worker_on_session_close(void *arg)
{
	worker_exit_if_idle(arg);
}

static void
worker_pause_accept(struct worker *w)
{
	struct timeval tv = { 0, WORKER_EMFILE_PAUSE_MS * 1000 };

	if (w->lep_ev != NULL)
		event_del(w->lep_ev);
	for (size_t i = 0; i < w->nlistens; i++)
		if (w->listens[i].ev != NULL)
			event_del(w->listens[i].ev);
	evtimer_add(w->resume_timer, &tv);
}

static void
worker_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	if (w->stopping)
		return;
	if (w->lep_ev != NULL)
		event_add(w->lep_ev, NULL);
	for (size_t i = 0; i < w->nlistens; i++)
		if (w->listens[i].ev != NULL)
			event_add(w->listens[i].ev, NULL);
}

static void
worker_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct worker_listen *wl = arg;
	struct sockaddr_storage peer;
	socklen_t len;
	int fd;

	for (int i = 0; i < WORKER_ACCEPT_BATCH && !wl->w->stopping; i++) {
		len = sizeof(peer);
		fd = accept4(lfd, (struct sockaddr *)&peer, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR || errno == ECONNABORTED)
				return;
			log_warn("accept on listener %s",
			    wl->listener->cfg->name);
			/* Out of descriptors or memory: back off briefly
			 * rather than spin on a socket that stays ready. */
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				worker_pause_accept(wl->w);
			return;
		}
		session_start(&wl->w->env, wl->listener, wl->bind, fd,
		    (struct sockaddr *)&peer, len);
	}
}

/* The listeners' epoll set is readable: accept on those that are ready. */
static void
worker_on_listeners(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[16];
	int n;

	n = epoll_wait(fd, evs, sizeof(evs) / sizeof(evs[0]), 0);
	for (int i = 0; i < n && !w->stopping; i++) {
		struct worker_listen *wl = evs[i].data.ptr;

		worker_on_accept(wl->bind->fd, EV_READ, wl);
	}
}

/* Watch every listener through one EPOLLEXCLUSIVE set; -1: not possible
 * here (old kernel), use one libevent event per listener instead. */
static int
worker_watch_exclusive(struct worker *w)
{
	w->lepfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->lepfd == -1)
		return -1;
	for (size_t i = 0; i < w->nlistens; i++) {
		struct epoll_event ev;

		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN | EPOLLEXCLUSIVE;
		ev.data.ptr = &w->listens[i];
		if (epoll_ctl(w->lepfd, EPOLL_CTL_ADD, w->listens[i].bind->fd,
		    &ev) == -1) {
			log_debug("worker: EPOLLEXCLUSIVE: %s", strerror(errno));
			close(w->lepfd);
			w->lepfd = -1;
			return -1;
		}
	}
	w->lep_ev = event_new(w->base, w->lepfd, EV_READ | EV_PERSIST,
	    worker_on_listeners, w);
	if (w->lep_ev == NULL || event_add(w->lep_ev, NULL) == -1)
		fatalx("worker: cannot watch the listeners");
	return 0;
}

static void
worker_on_stop_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	log_info("worker: shutdown_timeout expired, closing %u session(s)",
	    w->env.nsessions);
	session_close_all(&w->env, "shutdown");
	event_base_loopbreak(w->base);
}

/* Stop accepting; sessions may finish within shutdown_timeout. */
static void
worker_stop(void *arg)
{
	struct worker *w = arg;
	struct timeval tv;
	unsigned ms = w->rt->cfg->shutdown_timeout_ms;

	if (w->stopping) {
		/* Second request: stop now. */
		session_close_all(&w->env, "shutdown");
		event_base_loopbreak(w->base);
		return;
	}
	w->stopping = true;
	if (w->lep_ev != NULL) {
		event_del(w->lep_ev);
		close(w->lepfd);	/* drops every registration in it */
		w->lepfd = -1;
	}
	for (size_t i = 0; i < w->nlistens; i++) {
		if (w->listens[i].ev != NULL)
			event_del(w->listens[i].ev);
		close(w->listens[i].bind->fd);
	}
	evtimer_del(w->resume_timer);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(w->stop_timer, &tv);
	log_debug("worker: stopping, %u session(s) open", w->env.nsessions);
	worker_exit_if_idle(w);
}

void
worker_main(const struct runtime *rt, unsigned slot, int parent_fd)
{
	struct worker w;
	size_t n = 0;

	memset(&w, 0, sizeof(w));
	w.rt = rt;
	w.lepfd = -1;
	if (child_drop_privileges(rt->cfg) == -1)
		exit(CHILD_EXIT_CONFIG);
	w.base = child_event_base();
	shm_worker_attach(slot);

	w.env.base = w.base;
	w.env.rt = rt;
	w.env.on_close = worker_on_session_close;
	w.env.arg = &w;
	w.env.bal = calloc(rt->npools, sizeof(*w.env.bal));
	if (w.env.bal == NULL)
		fatal("worker: calloc");
	for (size_t i = 0; i < rt->npools; i++)
		if ((w.env.bal[i] = bal_pool_new(rt->pools[i].cfg)) == NULL)
			fatalx("worker: cannot set up pool %s",
			    rt->pools[i].cfg->name);

	for (size_t i = 0; i < rt->nlisteners; i++)
		n += rt->listeners[i].nbinds;
	w.listens = calloc(n, sizeof(*w.listens));
	if (w.listens == NULL)
		fatal("worker: calloc");
	for (size_t i = 0; i < rt->nlisteners; i++) {
		const struct rt_listener *l = &rt->listeners[i];

		for (size_t j = 0; j < l->nbinds; j++) {
			struct worker_listen *wl = &w.listens[w.nlistens++];

			wl->w = &w;
			wl->listener = l;
			wl->bind = &l->binds[j];
		}
	}
	if (worker_watch_exclusive(&w) == -1) {
		for (size_t i = 0; i < w.nlistens; i++) {
			struct worker_listen *wl = &w.listens[i];

			wl->ev = event_new(w.base, wl->bind->fd,
			    EV_READ | EV_PERSIST, worker_on_accept, wl);
			if (wl->ev == NULL || event_add(wl->ev, NULL) == -1)
				fatalx("worker: cannot watch listener %s",
				    wl->listener->cfg->name);
		}
	}
	w.stop_timer = evtimer_new(w.base, worker_on_stop_timeout, &w);
	w.resume_timer = evtimer_new(w.base, worker_on_resume, &w);
	if (w.stop_timer == NULL || w.resume_timer == NULL)
		fatalx("worker: cannot create timers");
	if (child_events_init(&w.ce, w.base, parent_fd, worker_stop, &w) == -1)
		fatalx("worker: cannot watch signals");

	log_debug("worker %u started (generation %u)", slot, rt->generation);
	child_ready();
	event_base_dispatch(w.base);

	if (w.lep_ev != NULL)
		event_free(w.lep_ev);
	if (w.lepfd != -1)
		close(w.lepfd);
	for (size_t i = 0; i < w.nlistens; i++) {
		if (w.listens[i].ev != NULL)
			event_free(w.listens[i].ev);
		if (!w.stopping)
			close(w.listens[i].bind->fd);
	}
	free(w.listens);
	event_free(w.stop_timer);
	event_free(w.resume_timer);
	child_events_free(&w.ce);
	for (size_t i = 0; i < rt->npools; i++)
		bal_pool_free(w.env.bal[i]);
	free(w.env.bal);
	event_base_free(w.base);
	exit(0);
}
