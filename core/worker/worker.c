/* SPDX-License-Identifier: MIT */
/*
 * worker: a forked, unprivileged process with one libevent loop. It accepts
 * on the listening sockets it shares with its siblings and hands each
 * connection to a session. SIGTERM (or the master's pipe closing) stops
 * accepting at once and lets sessions finish up to shutdown_timeout.
 *
 * One wake-up per connection: the listening sockets sit in libevent's own
 * epoll set with EPOLLEXCLUSIVE, added behind libevent's back, each
 * reported under the descriptor of an eventfd that libevent watches and
 * that never becomes readable itself. The kernel then wakes only one task
 * sleeping in epoll_wait on a listener, which a nested epoll set (what
 * libevent 2.1 would need otherwise) cannot do. Where this cannot be set up
 * (not the epoll backend, an old kernel) every worker watches every
 * listener through libevent, as before.
 *
 * Descriptors (SPEC.md "Descriptors"): a worker holds at most the sessions
 * its limit allows (fdplan.c). At that cap it stops accepting, so the
 * others take the queue; when no worker has room, it accepts on a timer
 * and refuses with the over-capacity 421 and a FIN through a reserve
 * descriptor, so no client is left silent. accept(2) failing for want of
 * descriptors pauses accepting on a timer, never a busy loop.
 */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <sys/socket.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "balancer/balancer.h"
#include "core/child.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/shm.h"
#include "core/worker/clients.h"
#include "core/worker/fdplan.h"
#include "core/worker/session.h"
#include "core/worker/worker.h"

/* Accepting paused after accept(2) ran out of descriptors or memory. */
#define WORKER_EMFILE_PAUSE_MS	100
/* While full: how often to look whether clients wait that nobody takes. */
#define WORKER_REFUSE_TICK_MS	250
/* Refusals per tick and listener, so one tick stays short. */
#define WORKER_REFUSE_BATCH	256
/* At most one "out of descriptors" warning per this many seconds. */
#define WORKER_WARN_EVERY_S	10

struct worker;

struct worker_listen {
	struct worker *w;
	struct event *ev;		/* on wakefd, or on the socket itself */
	const struct rt_listener *listener;
	const struct rt_bind *bind;
	int wakefd;			/* eventfd standing for the socket, or -1 */
};

struct worker {
	struct event_base *base;
	const struct runtime *rt;
	struct session_env env;
	struct worker_listen *listens;
	size_t nlistens;
	int epfd;			/* libevent's epoll set, or -1 */
	int reserve_fd;			/* closed to refuse one connection */
	int kick_fd;			/* shared: wakes a listening worker */
	struct event *kick_ev;
	unsigned cap;			/* sessions this worker may hold */
	struct child_events ce;
	struct event *stop_timer;
	struct event *resume_timer;	/* end of an EMFILE pause */
	struct event *refuse_timer;	/* while full */
	int64_t warned_us;		/* last descriptor warning */
	unsigned unwarned;		/* shortages since then */
	uint64_t accepted;		/* connections taken */
	uint64_t accept_idle;		/* wake-ups that found none */
	bool listening;
	bool full;
	bool stopping;
};

static void
worker_exit_if_idle(struct worker *w)
{
	if (w->stopping && w->env.nsessions == 0)
		event_base_loopbreak(w->base);
}

/*
 * Tell the other workers whether this one can take a session: by its
 * count against its cap, not by whether it listens right now (below the
 * cap it listens again by its next tick at the latest), so a worker at its
 * cap never refuses a client that another one has room for.
 */
static void
worker_publish_room(const struct worker *w)
{
	clients_set_room(w->stopping ? CLIENTS_ROOM_NONE :
	    w->env.nsessions < w->cap ? CLIENTS_ROOM_YES : CLIENTS_ROOM_FULL);
}

/* Is a connection waiting on any listening socket? */
static bool
worker_queue_waiting(const struct worker *w)
{
	struct pollfd pfd[64];
	size_t n = 0;

	for (size_t i = 0; i < w->nlistens && n < 64; i++) {
		pfd[n].fd = w->listens[i].bind->fd;
		pfd[n].events = POLLIN;
		pfd[n].revents = 0;
		n++;
	}
	return n > 0 && poll(pfd, n, 0) > 0;
}

void
worker_kick(int kick_fd)
{
	uint64_t one = 1;

	if (kick_fd != -1)
		(void)!write(kick_fd, &one, sizeof(one));
}

/* Add the listening socket to libevent's epoll set, exclusively and
 * under its eventfd's name, or take it out. */
static int
worker_epoll_listener(struct worker *w, const struct worker_listen *wl,
    int op)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	ev.data.fd = wl->wakefd;
	return epoll_ctl(w->epfd, op, wl->bind->fd, &ev);
}

/*
 * Start or stop taking connections from the listening sockets. With
 * exclusive wake-ups a connection wakes one worker only: one that stops
 * listening may have been that worker for connections still queued, so it
 * kicks another awake for them.
 */
static void
worker_listen(struct worker *w, bool on)
{
	if (w->listening == on || (on && w->stopping))
		return;
	w->listening = on;
	for (size_t i = 0; i < w->nlistens; i++) {
		struct worker_listen *wl = &w->listens[i];

		if (wl->wakefd != -1) {
			if (worker_epoll_listener(w, wl, on ? EPOLL_CTL_ADD :
			    EPOLL_CTL_DEL) == -1)
				log_warn("worker: epoll_ctl listener %s",
				    wl->listener->cfg->name);
		} else if (on) {
			event_add(wl->ev, NULL);
		} else {
			event_del(wl->ev);
		}
	}
	if (on)
		event_add(w->kick_ev, NULL);
	else
		event_del(w->kick_ev);
	worker_publish_room(w);
	if (!on && worker_queue_waiting(w))
		worker_kick(w->kick_fd);
}

/* Out of descriptors or memory: say so now and then, not per connection. */
static void
worker_warn_short(struct worker *w, const struct worker_listen *wl, int err)
{
	int64_t now = net_now_us();

	if (w->warned_us != 0 &&
	    now - w->warned_us < (int64_t)WORKER_WARN_EVERY_S * 1000000) {
		w->unwarned++;
		return;
	}
	log_warnx("accept on listener %s: %s (%u session(s) open, cap %u; "
	    "%u more such failure(s) in the last %d s); pausing accepts for "
	    "%d ms", wl->listener->cfg->name, strerror(err),
	    w->env.nsessions, w->cap, w->unwarned, WORKER_WARN_EVERY_S,
	    WORKER_EMFILE_PAUSE_MS);
	w->warned_us = now;
	w->unwarned = 0;
}

/*
 * Accept one connection through the reserve descriptor and refuse it.
 * Returns false when nothing was waiting.
 */
static bool
worker_refuse_one(struct worker *w, const struct worker_listen *wl,
    const char *why)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	int fd;

	if (w->reserve_fd != -1) {
		close(w->reserve_fd);
		w->reserve_fd = -1;
	}
	fd = accept4(wl->bind->fd, (struct sockaddr *)&peer, &len,
	    SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd != -1)
		session_refuse(&w->env, wl->listener, fd,
		    (struct sockaddr *)&peer, len, why);
	w->reserve_fd = eventfd(0, EFD_CLOEXEC);
	return fd != -1;
}

static void
worker_set_full(struct worker *w, bool full)
{
	struct timeval tv = { 0, WORKER_REFUSE_TICK_MS * 1000 };

	if (w->full == full)
		return;
	w->full = full;
	if (full) {
		log_debug("worker: %u sessions, at its cap: not accepting",
		    w->env.nsessions);
		worker_listen(w, false);
		evtimer_add(w->refuse_timer, &tv);
	} else {
		evtimer_del(w->refuse_timer);
		if (!evtimer_pending(w->resume_timer, NULL))
			worker_listen(w, true);
	}
}

static void
worker_on_session_close(void *arg)
{
	struct worker *w = arg;

	/* A little below the cap before accepting again, so a queue of
	 * waiting clients does not flip the listeners on and off; the tick
	 * takes it up again sooner when clients wait. */
	if (w->full && w->env.nsessions + 1 + w->cap / 64 <= w->cap)
		worker_set_full(w, false);
	else if (w->env.nsessions + 1 == w->cap)
		worker_publish_room(w);
	worker_exit_if_idle(w);
}

/* Full, and a tick passed: refuse what waits if nobody else can take it. */
static void
worker_on_refuse_tick(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct timeval tv = { 0, WORKER_REFUSE_TICK_MS * 1000 };

	if (!w->full || w->stopping)
		return;
	if (w->env.nsessions < w->cap) {
		worker_set_full(w, false);
		return;
	}
	if (!clients_any_room()) {
		for (size_t i = 0; i < w->nlistens; i++)
			for (int n = 0; n < WORKER_REFUSE_BATCH &&
			    worker_refuse_one(w, &w->listens[i],
			    "every worker is at its descriptor cap"); n++)
				;
	}
	evtimer_add(w->refuse_timer, &tv);
}

static void
worker_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	if (!w->full)
		worker_listen(w, true);
}

/*
 * Move this worker to the back of the listener's line. The kernel offers
 * a new connection to the epoll sets in the order they were added: a set
 * whose worker is not asleep in epoll_wait is only marked ready, and the
 * walk goes on to the first one asleep, which it wakes. The worker that
 * just took a connection is the one most likely still busy with it when
 * the next arrives; left at the front, it would be marked ready for that
 * next connection too, and race the woken worker to accept4 for it (the
 * loser's wake-up finds nothing). Re-adding the listener puts it last, so
 * idle workers are offered connections first, in turn.
 */
static void
worker_requeue(struct worker *w, const struct worker_listen *wl)
{
	if (worker_epoll_listener(w, wl, EPOLL_CTL_DEL) == -1 ||
	    worker_epoll_listener(w, wl, EPOLL_CTL_ADD) == -1)
		log_warn("worker: epoll_ctl listener %s",
		    wl->listener->cfg->name);
}

/*
 * Take one connection from `wl`: 1 when one was taken (or refused for
 * want of descriptors), 0 when none waited, -1 when this worker must stop
 * taking connections for now (at its cap, or paused).
 */
static int
worker_accept_one(struct worker *w, struct worker_listen *wl)
{
	struct timeval tv = { 0, WORKER_EMFILE_PAUSE_MS * 1000 };
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	int fd, err;

	if (w->stopping || !w->listening)
		return -1;
	if (w->env.nsessions >= w->cap) {
		worker_set_full(w, true);
		return -1;
	}
	fd = accept4(wl->bind->fd, (struct sockaddr *)&peer, &len,
	    SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd == -1) {
		err = errno;
		if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR ||
		    err == ECONNABORTED) {
			w->accept_idle++;
			return 0;
		}
		if (err != EMFILE && err != ENFILE && err != ENOBUFS &&
		    err != ENOMEM) {
			log_warnx("accept on listener %s: %s",
			    wl->listener->cfg->name, strerror(err));
			return 0;
		}
		/* Short of descriptors though under the cap: answer this
		 * one through the reserve, then let the other workers take
		 * the queue for a while. */
		worker_warn_short(w, wl, err);
		(void)worker_refuse_one(w, wl, strerror(err));
		evtimer_add(w->resume_timer, &tv);
		worker_listen(w, false);
		return -1;
	}
	w->accepted++;
	if (wl->wakefd != -1 && w->rt->cfg->workers > 1)
		worker_requeue(w, wl);
	session_start(&w->env, wl->listener, wl->bind, fd,
	    (struct sockaddr *)&peer, len);
	/* At the cap now: stop listening before sleeping again, so the next
	 * connection's wake-up goes to a worker that can take it. */
	if (w->env.nsessions >= w->cap)
		worker_set_full(w, true);
	return 1;
}

/*
 * The listener is ready: take one connection. One per wake-up, not a loop
 * until EAGAIN: the common case is one connection, and the second accept4
 * would fail for nothing; a longer queue keeps the socket ready, so the
 * next turn of the loop (level-triggered) takes the next one.
 */
static void
worker_on_accept(evutil_socket_t unused, short what, void *arg)
{
	struct worker_listen *wl = arg;

	(void)worker_accept_one(wl->w, wl);
}

/* Another worker stopped listening with connections queued: take them
 * all (this worker's own wake-ups for them never came). */
static void
worker_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t v;

	(void)!read(fd, &v, sizeof(v));
	for (size_t i = 0; i < w->nlistens; i++) {
		int rc;

		while ((rc = worker_accept_one(w, &w->listens[i])) == 1)
			;
		if (rc == -1)
			return;
	}
}

/* libevent's epoll descriptor: the only eventpoll in /proc/self/fd (the
 * child closed all it inherited but the master pipe and the listeners),
 * or -1 when there is none or more than one. */
static int
worker_find_epoll(void)
{
	char path[64], link[64];
	struct dirent *de;
	DIR *d;
	int found = -1;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		ssize_t n;

		if (*end != '\0' || end == de->d_name || fd == dirfd(d))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%ld", fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strcmp(link, "anon_inode:[eventpoll]") != 0)
			continue;
		if (found != -1) {	/* two: cannot tell which */
			found = -1;
			break;
		}
		found = (int)fd;
	}
	closedir(d);
	return found;
}

/* Watch the listeners: exclusively through libevent's epoll set when it
 * can be found, else one plain libevent event per listener. */
static void
worker_watch(struct worker *w, int epfd)
{
	bool exclusive = epfd != -1 &&
	    strncmp(event_base_get_method(w->base), "epoll", 5) == 0;

	w->epfd = exclusive ? epfd : -1;
	for (size_t i = 0; i < w->nlistens; i++) {
		struct worker_listen *wl = &w->listens[i];
		int fd = wl->bind->fd;

		wl->wakefd = -1;
		if (exclusive &&
		    (wl->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) != -1)
			fd = wl->wakefd;
		wl->ev = event_new(w->base, fd, EV_READ | EV_PERSIST,
		    worker_on_accept, wl);
		if (wl->ev == NULL)
			fatalx("worker: cannot watch listener %s",
			    wl->listener->cfg->name);
		/* The eventfd is watched for good; the socket itself is
		 * switched by worker_listen(). */
		if (wl->wakefd != -1 && event_add(wl->ev, NULL) == -1)
			fatalx("worker: cannot watch listener %s",
			    wl->listener->cfg->name);
	}
	worker_listen(w, true);
	log_debug("worker: %s wake-ups on %zu listening socket(s)",
	    w->epfd != -1 ? "exclusive" : "shared", w->nlistens);
}

static void
worker_on_stop_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	log_info("worker: shutdown_timeout expired, closing %u session(s)",
	    w->env.nsessions);
	session_close_all(&w->env);
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
		session_close_all(&w->env);
		event_base_loopbreak(w->base);
		return;
	}
	worker_listen(w, false);
	w->stopping = true;
	clients_set_room(CLIENTS_ROOM_NONE);
	for (size_t i = 0; i < w->nlistens; i++) {
		event_del(w->listens[i].ev);
		close(w->listens[i].bind->fd);
	}
	evtimer_del(w->resume_timer);
	evtimer_del(w->refuse_timer);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(w->stop_timer, &tv);
	log_debug("worker: stopping, %u session(s) open", w->env.nsessions);
	worker_exit_if_idle(w);
}

void
worker_main(const struct runtime *rt, unsigned slot, int parent_fd,
    int kick_fd)
{
	struct worker w;
	size_t n = 0;
	int epfd;

	memset(&w, 0, sizeof(w));
	w.rt = rt;
	w.epfd = -1;
	if (child_drop_privileges(rt->cfg) == -1)
		exit(CHILD_EXIT_CONFIG);
	w.base = child_event_base();
	epfd = worker_find_epoll();
	shm_worker_attach(slot);
	metrics_worker_attach();
	clients_attach();

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
			session_listener_setup(wl->bind->fd);
		}
	}
	w.cap = fdplan_worker_sessions(fdplan_limit(false), w.nlistens);
	w.reserve_fd = eventfd(0, EFD_CLOEXEC);
	w.kick_fd = kick_fd;
	w.kick_ev = event_new(w.base, kick_fd, EV_READ | EV_PERSIST,
	    worker_on_kick, &w);
	if (w.kick_ev == NULL)
		fatalx("worker: cannot watch the kick descriptor");
	w.stop_timer = evtimer_new(w.base, worker_on_stop_timeout, &w);
	w.resume_timer = evtimer_new(w.base, worker_on_resume, &w);
	w.refuse_timer = evtimer_new(w.base, worker_on_refuse_tick, &w);
	if (w.stop_timer == NULL || w.resume_timer == NULL ||
	    w.refuse_timer == NULL)
		fatalx("worker: cannot create timers");
	if (child_events_init(&w.ce, w.base, parent_fd, worker_stop, &w) == -1)
		fatalx("worker: cannot watch signals");
	worker_watch(&w, epfd);

	log_debug("worker %u started (generation %u), up to %u sessions",
	    slot, rt->generation, w.cap);
	/* Not before: setting up reads /proc/self/fd (worker_find_epoll). */
	if (child_sandbox(rt->cfg, SANDBOX_WORKER, parent_fd) == -1)
		exit(CHILD_EXIT_CONFIG);
	child_ready();
	event_base_dispatch(w.base);
	log_debug("worker %u: %llu connection(s) accepted, %llu wake-up(s) "
	    "found none", slot, (unsigned long long)w.accepted,
	    (unsigned long long)w.accept_idle);

	for (size_t i = 0; i < w.nlistens; i++) {
		if (w.listens[i].ev != NULL)
			event_free(w.listens[i].ev);
		if (w.listens[i].wakefd != -1)
			close(w.listens[i].wakefd);
		if (!w.stopping)
			close(w.listens[i].bind->fd);
	}
	free(w.listens);
	if (w.reserve_fd != -1)
		close(w.reserve_fd);
	event_free(w.stop_timer);
	event_free(w.resume_timer);
	event_free(w.refuse_timer);
	event_free(w.kick_ev);
	child_events_free(&w.ce);
	for (size_t i = 0; i < rt->npools; i++)
		bal_pool_free(w.env.bal[i]);
	free(w.env.bal);
	event_base_free(w.base);
	exit(0);
}
