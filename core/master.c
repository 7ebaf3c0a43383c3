/* SPDX-License-Identifier: MIT */
/*
 * master: binds the listeners, creates shared memory, forks the workers,
 * respawns children that die (rate-limited, never one that failed on its
 * config) and turns SIGTERM/SIGINT into a graceful stop. Signals arrive
 * through a signalfd as ordinary events.
 */
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/control.h"
#include "core/health.h"
#include "core/log.h"
#include "core/master.h"
#include "core/net.h"
#include "core/notify.h"
#include "core/runtime.h"
#include "core/shm.h"
#include "core/worker.h"

/* A child that dies this soon after starting counts as a quick death. */
#define RESPAWN_QUICK_US	(1000 * 1000)
/* After this many quick deaths in a row, wait before each respawn. */
#define RESPAWN_QUICK_MAX	3
#define RESPAWN_DELAY_MS	1000
/* Grace on top of shutdown_timeout before children are killed. */
#define STOP_GRACE_MS		5000

enum child_kind {
	CHILD_WORKER,
	CHILD_HEALTH,
};
static const char *const child_kind_names[] = { "worker", "health process" };

struct child {
	pid_t pid;			/* 0 = slot free */
	enum child_kind kind;
	unsigned slot;			/* shm worker slot */
	unsigned generation;
	int64_t started_us;
	unsigned quick_deaths;
	bool respawn_pending;
};

struct master {
	struct event_base *base;
	struct runtime *rt;
	struct child children[SHM_MAX_WORKERS];
	size_t nchildren;
	int sigfd;
	struct event *sig_ev;
	struct event *respawn_timer;
	struct event *kill_timer;
	int pipe_r;			/* children watch it: EOF = master died */
	int pipe_w;
	struct control *ctl;
	bool stopping;
	int exit_code;
};

static struct master master;

static void master_spawn(struct master *m, struct child *c);

static void
master_runtime_free(struct runtime *rt)
{
	if (rt == NULL)
		return;
	for (size_t i = 0; i < rt->nlisteners; i++) {
		for (size_t j = 0; j < rt->listeners[i].nbinds; j++)
			if (rt->listeners[i].binds[j].fd != -1)
				close(rt->listeners[i].binds[j].fd);
		free(rt->listeners[i].binds);
	}
	free(rt->listeners);
	for (size_t i = 0; i < rt->npools; i++)
		free(rt->pools[i].server_slot);
	free(rt->pools);
	free(rt);
}

/* Bind every listener and number every listener and server in shm. */
static struct runtime *
master_runtime_new(struct config *cfg, unsigned generation)
{
	struct runtime *rt;
	unsigned server_slot = 0;

	if (cfg->nlisteners > SHM_MAX_LISTENERS)
		fatalx("too many listeners (at most %d)", SHM_MAX_LISTENERS);
	rt = calloc(1, sizeof(*rt));
	if (rt == NULL)
		fatal("calloc");
	rt->cfg = cfg;
	rt->generation = generation;
	rt->listeners = calloc(cfg->nlisteners, sizeof(*rt->listeners));
	rt->pools = calloc(cfg->npools, sizeof(*rt->pools));
	if (rt->listeners == NULL || rt->pools == NULL)
		fatal("calloc");
	rt->nlisteners = cfg->nlisteners;
	rt->npools = cfg->npools;
	for (size_t i = 0; i < cfg->npools; i++) {
		const struct cfg_pool *p = &cfg->pools[i];

		rt->pools[i].cfg = p;
		rt->pools[i].server_slot = calloc(p->nservers,
		    sizeof(unsigned));
		if (rt->pools[i].server_slot == NULL)
			fatal("calloc");
		for (size_t j = 0; j < p->nservers; j++) {
			if (server_slot >= SHM_MAX_SERVERS)
				fatalx("too many servers (at most %d)",
				    SHM_MAX_SERVERS);
			rt->pools[i].server_slot[j] = server_slot++;
		}
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *lc = &cfg->listeners[i];
		struct rt_listener *l = &rt->listeners[i];

		l->cfg = lc;
		l->slot = (unsigned)i;
		l->nbinds = lc->nbinds;
		l->binds = calloc(lc->nbinds, sizeof(*l->binds));
		if (l->binds == NULL)
			fatal("calloc");
		for (size_t j = 0; j < lc->nbinds; j++) {
			l->binds[j].addr = &lc->binds[j];
			l->binds[j].wildcard = net_addr_is_wildcard(
			    (const struct sockaddr *)&lc->binds[j].ss);
			l->binds[j].fd = net_listen(&lc->binds[j]);
			if (l->binds[j].fd == -1)
				fatal("listener %s: cannot listen on %s",
				    lc->name, lc->binds[j].text);
		}
	}
	return rt;
}

static void
master_spawn(struct master *m, struct child *c)
{
	sigset_t all, old;
	pid_t pid;

	/* No signal may reach the child before it set up its own handling. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == -1) {
		log_warn("fork");
		sigprocmask(SIG_SETMASK, &old, NULL);
		c->pid = 0;
		c->respawn_pending = true;
		return;
	}
	if (pid == 0) {
		close(m->pipe_w);
		close(m->sigfd);
		control_close_in_child(m->ctl);
		sigprocmask(SIG_SETMASK, &old, NULL);
		if (c->kind == CHILD_HEALTH)
			health_main(m->rt, m->pipe_r);
		worker_main(m->rt, c->slot, m->pipe_r);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	c->pid = pid;
	c->generation = m->rt->generation;
	c->started_us = net_now_us();
	c->respawn_pending = false;
	log_debug("started %s %u pid %ld", child_kind_names[c->kind], c->slot,
	    (long)pid);
}

static void
master_on_respawn(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;

	if (m->stopping)
		return;
	for (size_t i = 0; i < m->nchildren; i++) {
		struct child *c = &m->children[i];

		if (!c->respawn_pending)
			continue;
		master_spawn(m, c);
		if (c->pid != 0)
			log_info("%s %u respawned as pid %ld",
			    child_kind_names[c->kind], c->slot, (long)c->pid);
	}
}

static bool
master_children_alive(const struct master *m)
{
	for (size_t i = 0; i < m->nchildren; i++)
		if (m->children[i].pid != 0)
			return true;
	return false;
}

static void
master_reap(struct master *m)
{
	struct timeval tv = { RESPAWN_DELAY_MS / 1000,
	    (RESPAWN_DELAY_MS % 1000) * 1000 };
	struct child *c;
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		c = NULL;
		for (size_t i = 0; i < m->nchildren; i++)
			if (m->children[i].pid == pid)
				c = &m->children[i];
		if (c == NULL)
			continue;
		c->pid = 0;
		if (c->kind == CHILD_WORKER)
			shm_slot_reset(c->slot);
		if (m->stopping) {
			if (WIFSIGNALED(status))
				log_warnx("%s %u (pid %ld) killed by "
				    "signal %d", child_kind_names[c->kind],
				    c->slot, (long)pid, WTERMSIG(status));
			continue;
		}
		if (WIFEXITED(status) &&
		    WEXITSTATUS(status) == CHILD_EXIT_CONFIG) {
			log_errx("%s %u (pid %ld) failed on its "
			    "configuration; not respawning it",
			    child_kind_names[c->kind], c->slot, (long)pid);
			continue;
		}
		if (WIFSIGNALED(status))
			log_warnx("%s %u (pid %ld) killed by signal %d; "
			    "respawning", child_kind_names[c->kind], c->slot,
			    (long)pid, WTERMSIG(status));
		else
			log_warnx("%s %u (pid %ld) exited with status %d; "
			    "respawning", child_kind_names[c->kind], c->slot,
			    (long)pid, WEXITSTATUS(status));
		if (net_now_us() - c->started_us < RESPAWN_QUICK_US)
			c->quick_deaths++;
		else
			c->quick_deaths = 0;
		if (c->quick_deaths >= RESPAWN_QUICK_MAX) {
			c->respawn_pending = true;
			evtimer_add(m->respawn_timer, &tv);
		} else {
			master_spawn(m, c);
			if (c->pid != 0)
				log_info("%s %u respawned as pid %ld",
				    child_kind_names[c->kind], c->slot,
				    (long)c->pid);
		}
	}
	if (!master_children_alive(m) && !m->stopping) {
		bool pending = false;

		for (size_t i = 0; i < m->nchildren; i++)
			pending |= m->children[i].respawn_pending;
		if (!pending) {
			log_errx("no worker left running; exiting");
			m->exit_code = 1;
			event_base_loopbreak(m->base);
		}
	}
	if (m->stopping && !master_children_alive(m))
		event_base_loopbreak(m->base);
}

/* Connections still queued on a listener get the shutdown 421. */
static void
master_drain_backlog(struct master *m)
{
	char reply[400];
	int n, fd;

	n = snprintf(reply, sizeof(reply), "421 4.3.2 %s Service shutting "
	    "down\r\n", m->rt->cfg->hostname);
	for (size_t i = 0; i < m->rt->nlisteners; i++) {
		struct rt_listener *l = &m->rt->listeners[i];

		for (size_t j = 0; j < l->nbinds; j++) {
			if (l->binds[j].fd == -1)
				continue;
			for (;;) {
				struct sockaddr_storage peer;
				socklen_t len = sizeof(peer);
				char client[NET_ADDR_TEXT];

				fd = accept4(l->binds[j].fd,
				    (struct sockaddr *)&peer, &len,
				    SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (fd == -1)
					break;
				if (l->cfg->mode == CFG_MODE_SMTP)
					(void)!write(fd, reply, (size_t)n);
				shutdown(fd, SHUT_WR);
				close(fd);
				net_addr_fmt((struct sockaddr *)&peer, client,
				    sizeof(client));
				log_info("session client=%s listener=%s "
				    "server=- backend=- attempts=0 "
				    "result=shutdown", client, l->cfg->name);
			}
			close(l->binds[j].fd);
			l->binds[j].fd = -1;
		}
	}
}

static void
master_kill_all(struct master *m, int sig)
{
	for (size_t i = 0; i < m->nchildren; i++)
		if (m->children[i].pid != 0)
			kill(m->children[i].pid, sig);
}

static void
master_on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;

	log_warnx("children still running after shutdown_timeout; killing");
	master_kill_all(m, SIGKILL);
}

static void
master_stop(struct master *m, int signo)
{
	unsigned ms = m->rt->cfg->shutdown_timeout_ms + STOP_GRACE_MS;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (m->stopping) {
		log_info("received %s again: exiting now", strsignal(signo));
		master_kill_all(m, SIGKILL);
		event_base_loopbreak(m->base);
		return;
	}
	log_info("received %s: stopping (sessions may take up to %u ms)",
	    strsignal(signo), m->rt->cfg->shutdown_timeout_ms);
	m->stopping = true;
	if (notify_send("STOPPING=1") == -1)
		log_warn("sd_notify STOPPING=1");
	master_kill_all(m, SIGTERM);
	master_drain_backlog(m);
	evtimer_add(m->kill_timer, &tv);
	if (!master_children_alive(m))
		event_base_loopbreak(m->base);
}

static void
master_on_signal(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	struct signalfd_siginfo si;

	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			master_reap(m);
			break;
		case SIGTERM:
		case SIGINT:
			master_stop(m, (int)si.ssi_signo);
			break;
		case SIGHUP:
			log_warnx("SIGHUP: reload is not supported yet in "
			    "this build; restart to apply a new config");
			break;
		}
	}
}

static void
master_log_ready(const struct master *m)
{
	char buf[1024];
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < m->rt->nlisteners; i++) {
		const struct rt_listener *l = &m->rt->listeners[i];

		for (size_t j = 0; j < l->nbinds && off < sizeof(buf); j++)
			off += (size_t)snprintf(buf + off, sizeof(buf) - off,
			    " %s=%s", l->cfg->name, l->binds[j].addr->text);
	}
	log_info("smtpfront %s ready: generation %u, %u worker(s), "
	    "listeners%s", SMTPFRONT_VERSION, m->rt->generation,
	    m->rt->cfg->workers, buf);
}

/* The control socket's view of the children: running workers only. */
static size_t
master_control_workers(void *arg, struct control_worker *out, size_t cap)
{
	const struct master *m = arg;
	size_t n = 0;

	for (size_t i = 0; i < m->nchildren && n < cap; i++) {
		const struct child *c = &m->children[i];

		if (c->kind != CHILD_WORKER || c->pid == 0)
			continue;
		out[n].pid = c->pid;
		out[n].generation = c->generation;
		out[n].slot = c->slot;
		out[n].draining = false;
		n++;
	}
	return n;
}

int
master_run(struct config *cfg)
{
	struct master *m = &master;
	sigset_t set;
	int fds[2];

	memset(m, 0, sizeof(*m));
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		fatal("sigprocmask");
	m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m->sigfd == -1)
		fatal("signalfd");
	if (pipe2(fds, O_CLOEXEC) == -1)
		fatal("pipe");
	m->pipe_r = fds[0];
	m->pipe_w = fds[1];

	shm_create();
	m->rt = master_runtime_new(cfg, 1);

	m->base = event_base_new();
	if (m->base == NULL)
		fatalx("event_base_new");
	m->sig_ev = event_new(m->base, m->sigfd, EV_READ | EV_PERSIST,
	    master_on_signal, m);
	m->respawn_timer = evtimer_new(m->base, master_on_respawn, m);
	m->kill_timer = evtimer_new(m->base, master_on_kill_timer, m);
	if (m->sig_ev == NULL || m->respawn_timer == NULL ||
	    m->kill_timer == NULL || event_add(m->sig_ev, NULL) == -1)
		fatalx("cannot set up the master's events");
	m->ctl = control_new(m->base, m->rt, master_control_workers, m);
	if (m->ctl == NULL)
		fatalx("cannot serve the control socket %s",
		    cfg->control.socket);

	if (cfg->workers + 1 > SHM_MAX_WORKERS)
		fatalx("too many workers (at most %d)", SHM_MAX_WORKERS);
	m->nchildren = cfg->workers;
	for (size_t i = 0; i < m->nchildren; i++) {
		m->children[i].kind = CHILD_WORKER;
		m->children[i].slot = (unsigned)i;
		master_spawn(m, &m->children[i]);
	}
	m->children[m->nchildren].kind = CHILD_HEALTH;
	master_spawn(m, &m->children[m->nchildren++]);
	master_log_ready(m);
	if (notify_send("READY=1\nSTATUS=ready") == -1)
		log_warn("sd_notify READY=1");

	event_base_dispatch(m->base);

	master_kill_all(m, SIGKILL);
	control_free(m->ctl);
	event_free(m->sig_ev);
	event_free(m->respawn_timer);
	event_free(m->kill_timer);
	event_base_free(m->base);
	close(m->sigfd);
	close(m->pipe_r);
	close(m->pipe_w);
	master_runtime_free(m->rt);
	log_info("stopped");
	return m->exit_code;
}
