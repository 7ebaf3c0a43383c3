/* SPDX-License-Identifier: MIT */
/*
 * children: the master's workers and health process: fork with the
 * right descriptors, the channel each one talks on, reaping, respawning
 * (rate-limited, never a child that failed on its config) and killing.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/child.h"
#include "core/health/health.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/runtime.h"
#include "core/shm.h"
#include "core/worker/clients.h"
#include "core/worker/worker.h"
#include "core/master/master_int.h"

const char *const child_kind_names[] = { "worker", "health process" };

/* ------------------------------------------------------------ children */

void
master_chan_close(struct child *c)
{
	if (c->chan_ev != NULL)
		event_free(c->chan_ev);
	c->chan_ev = NULL;
	if (c->chan != -1)
		close(c->chan);
	c->chan = -1;
}

/* Read what a child said on its channel; false on EOF or an error. */
bool
master_chan_read(struct child *c)
{
	char buf[64];
	ssize_t n;

	while ((n = read(c->chan, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (c->sblen > 0) {
				c->sbmsg[c->sblen++ - 1] = (unsigned char)buf[i];
				if (c->sblen - 1 < sizeof(c->sbmsg))
					continue;
				memcpy(&c->sbreport, c->sbmsg,
				    sizeof(c->sbreport));
				c->sbreported = true;
				c->sblen = 0;
				continue;
			}
			if (buf[i] == CHILD_MSG_SANDBOX) {
				c->sblen = 1;
				continue;
			}
			if (buf[i] != CHILD_MSG_READY || c->ready)
				continue;
			c->ready = true;
			log_debug("%s %u (pid %ld, generation %u) is accepting",
			    child_kind_names[c->kind], c->slot, (long)c->pid,
			    c->generation);
		}
	}
	return n == -1 && (errno == EAGAIN || errno == EINTR);
}

void
master_on_channel(evutil_socket_t fd, short what, void *arg)
{
	struct child *c = arg;
	bool was_ready = c->ready;

	if (!master_chan_read(c))
		master_chan_close(c);	/* exiting: SIGCHLD tells the rest */
	if (c->ready && !was_ready)
		master_check_ready(&master);
}

/* In a fresh child: keep its channel and, for a worker, the listening
 * sockets; close everything else, then open the child's own log (the
 * log's descriptors are kept until then: a line logged meanwhile must
 * not go to a descriptor number something else got). */
static void
master_child_fds(const struct child *c, const struct runtime *rt, int chan)
{
	size_t n = 2 + LOG_MAX_FDS;
	int *keep;

	for (size_t i = 0; i < rt->nlisteners; i++)
		n += rt->listeners[i].nbinds;
	if ((keep = calloc(n, sizeof(*keep))) == NULL)
		fatal("calloc");
	n = 0;
	keep[n++] = chan;
	if (c->kind == CHILD_WORKER)
		keep[n++] = master.kick_fd;
	for (size_t i = 0; c->kind == CHILD_WORKER && i < rt->nlisteners; i++)
		for (size_t j = 0; j < rt->listeners[i].nbinds; j++)
			keep[n++] = rt->listeners[i].binds[j].fd;
	n += log_fds(keep + n);
	child_close_fds(keep, n);
	free(keep);
	log_setup(rt->cfg);
}

/* Start c running rt. -1 (logged, errno set) when it could not be. */
int
master_spawn(struct master *m, struct child *c, struct runtime *rt)
{
	sigset_t all, old;
	size_t nservers, nlisteners;
	int sv[2], e;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		e = errno;
		log_warn("cannot start %s %u: socketpair",
		    child_kind_names[c->kind], c->slot);
		errno = e;
		return -1;
	}
	if (c->kind == CHILD_WORKER) {
		runtime_slot_caps(&m->slots, &nservers, &nlisteners);
		if (shm_slot_prepare(c->slot, nservers, nlisteners) == -1) {
			e = errno;
			log_warn("cannot start worker %u: no room in shared "
			    "memory", c->slot);
			close(sv[0]);
			close(sv[1]);
			errno = e;
			return -1;
		}
	}
	/* No signal may reach the child before it set up its own handling. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == -1) {
		e = errno;
		log_warn("cannot start %s %u: fork", child_kind_names[c->kind],
		    c->slot);
		sigprocmask(SIG_SETMASK, &old, NULL);
		close(sv[0]);
		close(sv[1]);
		errno = e;
		return -1;
	}
	if (pid == 0) {
		master_child_fds(c, rt, sv[1]);
		sigprocmask(SIG_SETMASK, &old, NULL);
		if (c->kind == CHILD_HEALTH)
			health_main(rt, sv[1]);
		worker_main(rt, c->slot, sv[1], m->kick_fd);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	c->chan = sv[0];
	if (evutil_make_socket_nonblocking(c->chan) == -1 ||
	    (c->chan_ev = event_new(m->base, c->chan, EV_READ | EV_PERSIST,
	    master_on_channel, c)) == NULL ||
	    event_add(c->chan_ev, NULL) == -1)
		log_warnx("cannot watch the channel of %s %u: it will not be "
		    "known to accept", child_kind_names[c->kind], c->slot);
	c->pid = pid;
	c->rt = rt;
	c->generation = rt->generation;
	rt->nchildren++;
	c->ready = false;
	c->sblen = 0;
	c->sbreported = false;
	c->sandboxed = rt->cfg->sandbox && sandbox_unavailable() == NULL;
	c->draining = false;
	c->started_us = net_now_us();
	c->respawn_pending = false;
	log_debug("started %s %u pid %ld (generation %u)",
	    child_kind_names[c->kind], c->slot, (long)pid, rt->generation);
	return 0;
}

/* A new worker entry in a free shm slot; NULL when there is none. */
static struct child *
master_new_worker(struct master *m)
{
	struct child *c;
	size_t i;

	for (i = 0; i < m->nworkers && m->workers[i] != NULL; i++)
		;
	if (i == m->nworkers) {
		struct child **n;

		if (m->nworkers >= SHM_MAX_WORKER_SLOTS)
			return NULL;
		n = realloc(m->workers, (m->nworkers + 16) * sizeof(*n));
		if (n == NULL)
			return NULL;
		memset(n + m->nworkers, 0, 16 * sizeof(*n));
		m->workers = n;
		m->nworkers += 16;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->kind = CHILD_WORKER;
	c->slot = (unsigned)i;
	c->chan = -1;
	m->workers[i] = c;
	return c;
}

void
master_worker_free(struct master *m, struct child *c)
{
	master_chan_close(c);
	m->workers[c->slot] = NULL;
	free(c);
}

void
master_drain_child(struct master *m, struct child *c, int64_t deadline)
{
	if (c->pid == 0 || c->draining)
		return;
	c->draining = true;
	c->deadline_us = deadline;
	kill(c->pid, SIGTERM);
}

int64_t
master_drain_deadline(const struct master *m)
{
	unsigned ms = m->rt->cfg->shutdown_timeout_ms + STOP_GRACE_MS;

	return net_now_us() + (int64_t)ms * 1000;
}

void
master_respawn(struct master *m, struct child *c)
{
	if (master_spawn(m, c, m->rt) == 0) {
		log_info("%s %u respawned as pid %ld",
		    child_kind_names[c->kind], c->slot, (long)c->pid);
		return;
	}
	c->respawn_pending = true;
	master_timer_add(m->respawn_timer, RESPAWN_DELAY_MS);
}

/* Fork the next batch of workers waiting to start; then come back. */
void
master_on_spawn(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	struct timeval now = { 0, 0 };
	unsigned n = 0;

	for (size_t i = 0; i < m->nworkers; i++) {
		struct child *c = m->workers[i];
		struct runtime *rt;

		if (c == NULL || c->start_rt == NULL)
			continue;
		if (m->stopping) {
			master_worker_free(m, c);
			continue;
		}
		if (n == SPAWN_BATCH) {
			evtimer_add(m->spawn_timer, &now);
			return;
		}
		rt = c->start_rt;
		c->start_rt = NULL;
		n++;
		if (master_spawn(m, c, rt) == 0)
			continue;
		if (rt == m->reload.rt) {
			master_reload_error(m, "cannot start worker %u of "
			    "generation %u: %s", c->slot, rt->generation,
			    strerror(errno));
			master_worker_free(m, c);
			master_reload_fail(m);
			return;
		}
		if (!m->started)
			fatalx("cannot start the workers");
		master_respawn(m, c);
	}
}

/* Workers that will start with rt, in batches. -1 when there is no slot. */
int
master_start_workers(struct master *m, struct runtime *rt, unsigned n)
{
	struct timeval now = { 0, 0 };

	for (unsigned i = 0; i < n; i++) {
		struct child *c = master_new_worker(m);

		if (c == NULL)
			return -1;
		c->start_rt = rt;
	}
	evtimer_add(m->spawn_timer, &now);
	return 0;
}

void
master_on_respawn(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	struct child *c;

	if (m->stopping)
		return;
	MASTER_FOREACH_CHILD(m, c) {
		if (c->respawn_pending && c->pid == 0)
			master_respawn(m, c);
	}
}

/* Workers that are, or will be, accepting (not the health process). */
static size_t
master_workers_serving(const struct master *m)
{
	size_t n = 0;

	for (size_t i = 0; i < m->nworkers; i++) {
		const struct child *c = m->workers[i];

		if (c != NULL && !c->draining && (c->pid != 0 ||
		    c->respawn_pending || c->start_rt != NULL))
			n++;
	}
	return n;
}

bool
master_children_alive(const struct master *m)
{
	struct child *c;

	MASTER_FOREACH_CHILD((struct master *)m, c) {
		if (c->pid != 0)
			return true;
	}
	return false;
}

static void
master_log_exit(const struct child *c, pid_t pid, int status,
    const char *what)
{
	if (WIFSIGNALED(status))
		log_warnx("%s %u (pid %ld, generation %u) killed by signal "
		    "%d%s", child_kind_names[c->kind], c->slot, (long)pid,
		    c->generation, WTERMSIG(status), what);
	else
		log_info("%s %u (pid %ld, generation %u) exited with status "
		    "%d%s", child_kind_names[c->kind], c->slot, (long)pid,
		    c->generation, WEXITSTATUS(status), what);
}

/* A child died unexpectedly: say how, count it, and respawn it, at once
 * or, after RESPAWN_QUICK_MAX quick deaths in a row, after a delay. */
static void
master_respawn_dead(struct master *m, struct child *c, const char *what,
    pid_t pid, int status, bool health)
{
	if (WIFSIGNALED(status))
		log_warnx("%s %u (pid %ld) killed by signal %d; respawning",
		    what, c->slot, (long)pid, WTERMSIG(status));
	else
		log_warnx("%s %u (pid %ld) exited with status %d; respawning",
		    what, c->slot, (long)pid, WEXITSTATUS(status));
	metrics_note_restart(health);
	if (net_now_us() - c->started_us < RESPAWN_QUICK_US)
		c->quick_deaths++;
	else
		c->quick_deaths = 0;
	if (c->quick_deaths >= RESPAWN_QUICK_MAX) {
		c->respawn_pending = true;
		master_timer_add(m->respawn_timer, RESPAWN_DELAY_MS);
	} else
		master_respawn(m, c);
}

/* The health process exited. */
static void
master_reap_health(struct master *m, struct child *c, pid_t pid, int status)
{
	const char *what = child_kind_names[c->kind];

	if (c->draining) {
		c->draining = false;
		if (WIFSIGNALED(status))
			master_log_exit(c, pid, status, " while draining");
		else
			log_info("%s %u (pid %ld, generation %u) finished",
			    what, c->slot, (long)pid, c->generation);
		if (m->stopping)
			return;
		/* Only now: one writer per health record at any time. */
		c->quick_deaths = 0;
		if (master_spawn(m, c, m->rt) == 0)
			log_info("health process of generation %u started as "
			    "pid %ld", c->generation, (long)c->pid);
		else
			master_respawn(m, c);
		return;
	}
	if (m->stopping) {
		if (WIFSIGNALED(status))
			master_log_exit(c, pid, status, "");
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_EXIT_CONFIG) {
		log_errx("%s %u (pid %ld) failed on its configuration; not "
		    "respawning it", what, c->slot, (long)pid);
		return;
	}
	master_respawn_dead(m, c, what, pid, status, true);
}

/* A worker exited; c is freed or respawned. */
static void
master_reap_worker(struct master *m, struct child *c, bool starting,
    pid_t pid, int status)
{
	if (c->draining) {
		if (WIFSIGNALED(status))
			master_log_exit(c, pid, status, " while draining");
		else
			log_info("worker %u (pid %ld, generation %u) finished",
			    c->slot, (long)pid, c->generation);
		master_worker_free(m, c);
		return;
	}
	if (m->stopping) {
		if (WIFSIGNALED(status))
			master_log_exit(c, pid, status, "");
		master_worker_free(m, c);
		return;
	}
	if (starting) {
		/* A worker of the generation being started: the reload
		 * fails; never respawned. */
		const char *when = c->ready ? "before the reload was over" :
		    "before it was accepting";

		if (WIFSIGNALED(status))
			master_reload_error(m, "worker %u (pid %ld) of "
			    "generation %u was killed by signal %d %s",
			    c->slot, (long)pid, c->generation,
			    WTERMSIG(status), when);
		else
			master_reload_error(m, "worker %u (pid %ld) of "
			    "generation %u exited with status %d %s",
			    c->slot, (long)pid, c->generation,
			    WEXITSTATUS(status), when);
		master_worker_free(m, c);
		master_reload_fail(m);
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_EXIT_CONFIG) {
		log_errx("worker %u (pid %ld) failed on its configuration; "
		    "not respawning it", c->slot, (long)pid);
		master_worker_free(m, c);
		return;
	}
	master_respawn_dead(m, c, "worker", pid, status, false);
}

/* A child that died of SIGSYS under its filter: say what it called. */
static void
master_note_sandbox_kill(const struct child *c, pid_t pid, int status)
{
	char name[64];

	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS ||
	    (!c->sandboxed && !c->sbreported))
		return;
	if (c->sbreported)
		sandbox_syscall_name(c->sbreport.arch, c->sbreport.nr, name,
		    sizeof(name));
	else
		snprintf(name, sizeof(name), "unknown (not reported)");
	if (c->kind == CHILD_WORKER)
		log_warnx("sandbox: worker %u (pid %ld) killed: forbidden "
		    "system call %s", c->slot, (long)pid, name);
	else
		log_warnx("sandbox: health process (pid %ld) killed: "
		    "forbidden system call %s", (long)pid, name);
	metrics_note_sandbox_kill();
}

static struct child *
master_child_by_pid(struct master *m, pid_t pid)
{
	struct child *c;

	MASTER_FOREACH_CHILD(m, c) {
		if (c->pid == pid)
			return c;
	}
	return NULL;
}

void
master_reap(struct master *m)
{
	struct runtime *rt;
	struct child *c;
	bool starting;
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == m->reload.resolver) {
			m->reload.resolver = 0;
			continue;
		}
		if ((c = master_child_by_pid(m, pid)) == NULL)
			continue;
		/* What it said before it went (a worker ready, then gone). */
		if (c->chan != -1)
			(void)master_chan_read(c);
		master_chan_close(c);
		master_note_sandbox_kill(c, pid, status);
		c->pid = 0;
		rt = c->rt;
		c->rt = NULL;
		starting = rt != NULL && rt == m->reload.rt;
		if (rt != NULL) {
			rt->nchildren--;
			/* Before anything else can: a failing reload frees
			 * the runtime it started. */
			master_rt_gc(m, rt);
		}
		if (c->kind == CHILD_WORKER) {
			clients_rate_retire(c->slot);
			shm_slot_reset(c->slot);
			/* A connection that woke it may still wait. */
			worker_kick(m->kick_fd);
			master_reap_worker(m, c, starting, pid, status);
		} else
			master_reap_health(m, c, pid, status);
	}
	if (!m->stopping && master_workers_serving(m) == 0) {
		log_errx("no worker left running; exiting");
		m->exit_code = 1;
		event_base_loopbreak(m->base);
		return;
	}
	if (m->stopping && !master_children_alive(m))
		event_base_loopbreak(m->base);
	else
		master_check_ready(m);
}

void
master_kill_all(struct master *m, int sig)
{
	struct child *c;

	MASTER_FOREACH_CHILD(m, c) {
		/* A draining child already has its SIGTERM; a second one
		 * would cut its sessions at once. */
		if (sig == SIGTERM && c->draining)
			continue;
		if (c->pid != 0)
			kill(c->pid, sig);
	}
	if (m->reload.resolver != 0)
		kill(m->reload.resolver, SIGKILL);
}

void
master_on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	int64_t now = net_now_us();
	struct child *c;

	MASTER_FOREACH_CHILD(m, c) {
		if (!c->draining || c->pid == 0 || now <= c->deadline_us)
			continue;
		log_warnx("%s %u (pid %ld, generation %u) still running after "
		    "shutdown_timeout; killing it", child_kind_names[c->kind],
		    c->slot, (long)c->pid, c->generation);
		kill(c->pid, SIGKILL);
		c->deadline_us = INT64_MAX;
	}
}
