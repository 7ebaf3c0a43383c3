/* SPDX-License-Identifier: MIT */
/*
 * master: binds the listeners, creates shared memory, forks the workers,
 * respawns children that die (rate-limited, never one that failed on its
 * config), reloads on SIGHUP or `reload` and turns SIGTERM/SIGINT into a
 * graceful stop. Signals arrive through a signalfd as ordinary events.
 *
 * Every child has a channel of its own (a socketpair): a worker says on it
 * when it is accepting; the child sees EOF on it when the master is gone.
 *
 * A reload goes through steps, none of which blocks the master's loop:
 *   parse    the file is loaded; host names in addresses are only listed;
 *   resolve  a resolver child looks them up (getaddrinfo, as at start),
 *            bounded by RESOLVE_TIMEOUT_MS;
 *   bind     the new runtime is built: sockets of unchanged bind addresses
 *            taken over, new ones bound;
 *   fork     the new generation's workers are started;
 *   ready    each of them says it is accepting: the reload fails when
 *            READY_QUIET_MS pass without one more saying so (a slow
 *            start of many workers is progress, a stuck one is not), or
 *            READY_MAX_MS in all.
 * Only then is the previous generation retired (its workers get SIGTERM,
 * close their listener copies and finish their sessions), the health
 * process restarted once the old one exited (one writer per health record),
 * READY=1 sent and the reload answered. A failure at any step stops what
 * was started (workers of the failed generation that already accepted
 * finish their sessions), keeps the running generation as it is, and
 * answers with the errors. The master holds every listening socket
 * throughout, so no connection is refused. One reload at a time: another
 * one asked for meanwhile is refused with a message saying so.
 */
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/child.h"
#include "core/deny.h"
#include "core/health/health.h"
#include "core/log.h"
#include "core/master/control.h"
#include "core/master/denyctl.h"
#include "core/master/master.h"
#include "core/master/metrics_http.h"
#include "core/master/notify.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/runtime.h"
#include "core/sandbox.h"
#include "core/shm.h"
#include "core/worker/clients.h"
#include "core/worker/fdplan.h"
#include "core/worker/worker.h"

/* Room for the errors (and, apart, the warnings) of one reload, as lines. */
#define RELOAD_ERR_MAX		16384

/* A child that dies this soon after starting counts as a quick death. */
#define RESPAWN_QUICK_US	(1000 * 1000)
/* After this many quick deaths in a row, wait before each respawn. */
#define RESPAWN_QUICK_MAX	3
#define RESPAWN_DELAY_MS	1000
/* Grace on top of shutdown_timeout before children are killed. */
#define STOP_GRACE_MS		5000
/* Workers forked per turn of the loop: the control socket and signals
 * are served between batches (a fork costs more with a bigger master). */
#define SPAWN_BATCH		8
/* Bounds of a reload's steps. */
#define RESOLVE_TIMEOUT_MS	5000
#define READY_QUIET_MS		10000
#define READY_MAX_MS		120000

enum child_kind {
	CHILD_WORKER,
	CHILD_HEALTH,
};
static const char *const child_kind_names[] = { "worker", "health process" };

struct child {
	pid_t pid;			/* 0 = not running */
	enum child_kind kind;
	unsigned slot;			/* worker: its shm worker slot */
	struct runtime *rt;		/* what it runs; NULL when not running */
	unsigned generation;
	int chan;			/* the master's end of its channel, or -1 */
	struct event *chan_ev;
	bool ready;			/* said it is accepting */
	/* A CHILD_MSG_SANDBOX being read, and the call it names. */
	unsigned char sbmsg[sizeof(struct sandbox_report)];
	size_t sblen;			/* 0: none; else bytes read + 1 */
	bool sandboxed;			/* it installed its filter */
	bool sbreported;
	struct sandbox_report sbreport;
	int64_t started_us;
	unsigned quick_deaths;
	bool respawn_pending;
	struct runtime *start_rt;	/* waiting to be forked with it */
	bool draining;			/* told to stop (older generation,
					 * or a failed reload's) */
	int64_t deadline_us;		/* draining: killed after this */
};

enum reload_phase {
	RELOAD_IDLE,
	RELOAD_RESOLVING,
	RELOAD_STARTING,
};

/* What the resolver child writes for each host name: one atomic write. */
struct resolver_msg {
	uint32_t idx;
	int32_t ok;
	struct cfg_addr addr;
	char err[256];
};
_Static_assert(sizeof(struct resolver_msg) <= 4096, "PIPE_BUF");

struct reload {
	enum reload_phase phase;
	unsigned generation;		/* the one being started */
	struct config *cfg;		/* RESOLVING: names being looked up */
	struct runtime *rt;		/* STARTING: the new generation */
	struct event *timer;		/* bound of the current step */
	pid_t resolver;
	int resolver_fd;
	struct event *resolver_ev;
	struct resolver_msg msg;	/* being read */
	size_t msg_len;
	bool *resolved;			/* per cfg->hosts entry */
	struct cfg_diag diag;		/* resolution errors */
	int64_t started_us;
	int64_t ready_by_us;		/* STARTING: the overall bound */
	unsigned nready;		/* STARTING: workers that said so */
	char errors[RELOAD_ERR_MAX];
	char warnings[RELOAD_ERR_MAX];
};

struct master {
	struct event_base *base;
	struct runtime *rt;		/* the current generation */
	struct rt_slots slots;
	struct runtime **rts;		/* every runtime still held */
	size_t nrts;
	struct child **workers;		/* indexed by shm worker slot */
	size_t nworkers;		/* length of workers[] */
	struct child health;
	int sigfd;
	int kick_fd;			/* wakes one listening worker (worker.c) */
	struct event *sig_ev;
	struct event *respawn_timer;
	struct event *kill_timer;
	struct event *drain_timer;	/* kills draining children past due */
	struct event *start_timer;	/* warns when start takes too long */
	struct event *spawn_timer;	/* forks the next batch */
	struct control *ctl;
	struct metrics_http *metrics;	/* GET /metrics, when configured */
	struct reload reload;
	bool started;			/* the first generation said ready */
	bool stopping;
	int exit_code;
};

static struct master master;

static void master_reload_fail(struct master *m);
static void master_check_ready(struct master *m);

/* ------------------------------------------------------------ helpers */

/* Append a line to buf (lines separated by '\n'). */
static void
master_lines_add(char *buf, size_t cap, const char *line)
{
	size_t off = strlen(buf);

	if (off + 2 < cap)
		snprintf(buf + off, cap - off, "%s\n", line);
}

/* Log each '\n'-terminated line of text as an error. */
static void
master_log_lines(const char *prefix, const char *text)
{
	const char *nl;

	for (; (nl = strchr(text, '\n')) != NULL; text = nl + 1)
		log_errx("%s%.*s", prefix, (int)(nl - text), text);
}

/* A reload error: logged, and kept for the answer. */
static void __attribute__((format(printf, 2, 3)))
master_reload_error(struct master *m, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_errx("reload: %s", line);
	master_lines_add(m->reload.errors, sizeof(m->reload.errors), line);
}

static void __attribute__((format(printf, 2, 3)))
master_reload_warning(struct master *m, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_warnx("reload: %s", line);
	master_lines_add(m->reload.warnings, sizeof(m->reload.warnings), line);
}

/* Every entry of diag as a reload error or warning, "FILE:LINE:COL: ...". */
static void
master_reload_diag(struct master *m, const struct cfg_diag *diag)
{
	const char *file = diag->file != NULL ? diag->file : "-";
	char line[600];

	for (size_t i = 0; i < diag->n; i++) {
		const struct cfg_diag_entry *e = &diag->entries[i];

		if (e->line == 0)
			snprintf(line, sizeof(line), "%s: %s", file,
			    e->message);
		else
			snprintf(line, sizeof(line), "%s:%u:%u: %s", file,
			    e->line, e->column, e->message);
		if (e->severity == CFG_WARNING)
			master_reload_warning(m, "%s", line);
		else
			master_reload_error(m, "%s", line);
	}
}

static void
master_timer_add(struct event *ev, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(ev, &tv);
}

/* ------------------------------------------------------------ runtimes */

static void
master_rt_add(struct master *m, struct runtime *rt)
{
	struct runtime **n = realloc(m->rts, (m->nrts + 1) * sizeof(*n));

	if (n == NULL)
		fatal("realloc");
	m->rts = n;
	m->rts[m->nrts++] = rt;
}

/* Free rt once nothing needs it: no child runs it, not current, not being
 * started. Its slots go back to the table. */
static void
master_rt_gc(struct master *m, struct runtime *rt)
{
	if (rt == NULL || rt->nchildren > 0 || rt == m->rt ||
	    rt == m->reload.rt)
		return;
	for (size_t i = 0; i < m->nrts; i++) {
		if (m->rts[i] != rt)
			continue;
		m->rts[i] = m->rts[--m->nrts];
		break;
	}
	runtime_release(rt, &m->slots);
	runtime_free(rt);
}

/* ------------------------------------------------------------ children */

static void
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
static bool
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

static void
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
static int
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

static void
master_worker_free(struct master *m, struct child *c)
{
	master_chan_close(c);
	m->workers[c->slot] = NULL;
	free(c);
}

/* Each child, workers and the health process. */
#define MASTER_FOREACH_CHILD(m, c)					\
	for (size_t _i = 0; _i <= (m)->nworkers; _i++)			\
		if (((c) = _i == (m)->nworkers ? &(m)->health :		\
		    (m)->workers[_i]) != NULL)

static void
master_drain_child(struct master *m, struct child *c, int64_t deadline)
{
	if (c->pid == 0 || c->draining)
		return;
	c->draining = true;
	c->deadline_us = deadline;
	kill(c->pid, SIGTERM);
}

static int64_t
master_drain_deadline(const struct master *m)
{
	unsigned ms = m->rt->cfg->shutdown_timeout_ms + STOP_GRACE_MS;

	return net_now_us() + (int64_t)ms * 1000;
}

static void
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
static void
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
static int
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

static void
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

static bool
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
	if (WIFSIGNALED(status))
		log_warnx("%s %u (pid %ld) killed by signal %d; respawning",
		    what, c->slot, (long)pid, WTERMSIG(status));
	else
		log_warnx("%s %u (pid %ld) exited with status %d; respawning",
		    what, c->slot, (long)pid, WEXITSTATUS(status));
	metrics_note_restart(true);
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
	if (WIFSIGNALED(status))
		log_warnx("worker %u (pid %ld) killed by signal %d; respawning",
		    c->slot, (long)pid, WTERMSIG(status));
	else
		log_warnx("worker %u (pid %ld) exited with status %d; "
		    "respawning", c->slot, (long)pid, WEXITSTATUS(status));
	metrics_note_restart(false);
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

static void
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

static void
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

static void
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

/* ------------------------------------------------------------ ready */

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

/* How many workers running rt said they are accepting, and how many run. */
static void
master_count_ready(const struct master *m, const struct runtime *rt,
    unsigned *ready, unsigned *running, unsigned *pending)
{
	*ready = *running = *pending = 0;
	for (size_t i = 0; i < m->nworkers; i++) {
		const struct child *c = m->workers[i];

		if (c == NULL || c->draining)
			continue;
		if (c->pid == 0) {
			*pending += c->respawn_pending || c->start_rt != NULL;
			continue;
		}
		if (c->rt != rt)
			continue;
		(*running)++;
		*ready += c->ready;
	}
}

static void master_reload_commit(struct master *m);

/* READY_QUIET_MS from now, but not past the reload's overall bound. */
static void
master_reload_ready_timer(struct master *m)
{
	int64_t left = (m->reload.ready_by_us - net_now_us()) / 1000;

	if (left < 0)
		left = 0;
	master_timer_add(m->reload.timer, left < READY_QUIET_MS ?
	    (unsigned)left : READY_QUIET_MS);
}

static void
master_check_ready(struct master *m)
{
	unsigned ready, running, pending;

	if (m->stopping)
		return;
	if (!m->started) {
		master_count_ready(m, m->rt, &ready, &running, &pending);
		if (running > 0 && ready == running && pending == 0) {
			m->started = true;
			evtimer_del(m->start_timer);
			master_log_ready(m);
			if (notify_send("READY=1\nSTATUS=ready") == -1)
				log_warn("sd_notify READY=1");
		}
	}
	if (m->reload.phase == RELOAD_STARTING) {
		master_count_ready(m, m->reload.rt, &ready, &running,
		    &pending);
		if (ready == m->reload.rt->cfg->workers)
			master_reload_commit(m);
		else if (ready > m->reload.nready) {
			/* Progress: the quiet time starts again. */
			m->reload.nready = ready;
			master_reload_ready_timer(m);
		}
	}
}

static void
master_on_start_timer(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	unsigned ready, running, pending;

	master_count_ready(m, m->rt, &ready, &running, &pending);
	log_warnx("start: %u of %u worker(s) said they are accepting after "
	    "%d s", ready, m->rt->cfg->workers, READY_QUIET_MS / 1000);
}

/* ------------------------------------------------------------ stop */

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

	if (m->stopping) {
		log_info("received %s again: exiting now", strsignal(signo));
		master_kill_all(m, SIGKILL);
		event_base_loopbreak(m->base);
		return;
	}
	log_info("received %s: stopping (sessions may take up to %u ms)",
	    strsignal(signo), m->rt->cfg->shutdown_timeout_ms);
	if (m->reload.phase != RELOAD_IDLE) {
		master_reload_error(m, "smtpfront is stopping");
		master_reload_fail(m);
	}
	m->stopping = true;
	if (notify_send("STOPPING=1") == -1)
		log_warn("sd_notify STOPPING=1");
	/* Workers not forked yet never will be. */
	for (size_t i = 0; i < m->nworkers; i++)
		if (m->workers[i] != NULL && m->workers[i]->start_rt != NULL)
			master_worker_free(m, m->workers[i]);
	master_kill_all(m, SIGTERM);
	master_drain_backlog(m);
	master_timer_add(m->kill_timer, ms);
	if (!master_children_alive(m))
		event_base_loopbreak(m->base);
}

/* ------------------------------------------------------------ reload */

/* user, group and control are fixed for the life of the master. */
static void
master_keep_fixed(struct master *m, const struct config *old,
    struct config *cfg)
{
	char o[128], n[128];
	struct {
		const char *key;
		char *newv;
		const char *oldv;
		size_t cap;
	} str[] = {
		{ "user", cfg->user, old->user, sizeof(cfg->user) },
		{ "group", cfg->group, old->group, sizeof(cfg->group) },
		{ "control.socket", cfg->control.socket, old->control.socket,
		    sizeof(cfg->control.socket) },
		{ "control.group", cfg->control.group, old->control.group,
		    sizeof(cfg->control.group) },
	};

	for (size_t i = 0; i < sizeof(str) / sizeof(str[0]); i++) {
		if (strcmp(str[i].newv, str[i].oldv) == 0)
			continue;
		master_reload_warning(m, "%s changed from \"%s\" to \"%s\": "
		    "that needs a restart; keeping \"%s\"", str[i].key,
		    str[i].oldv, str[i].newv, str[i].oldv);
		snprintf(str[i].newv, str[i].cap, "%s", str[i].oldv);
	}
	if (cfg->control.mode != old->control.mode) {
		snprintf(o, sizeof(o), "%04o", old->control.mode);
		snprintf(n, sizeof(n), "%04o", cfg->control.mode);
		master_reload_warning(m, "control.mode changed from %s to %s: "
		    "that needs a restart; keeping %s", o, n, o);
		cfg->control.mode = old->control.mode;
	}
}

static void
master_reload_timer_set(struct master *m, unsigned ms)
{
	master_timer_add(m->reload.timer, ms);
}

static void
master_resolver_stop(struct master *m)
{
	struct reload *r = &m->reload;

	if (r->resolver != 0)
		kill(r->resolver, SIGKILL);	/* reaped as usual */
	if (r->resolver_ev != NULL)
		event_free(r->resolver_ev);
	r->resolver_ev = NULL;
	if (r->resolver_fd != -1)
		close(r->resolver_fd);
	r->resolver_fd = -1;
	free(r->resolved);
	r->resolved = NULL;
	cfg_diag_free(&r->diag);
}

/* Back to idle, answering whoever asked. */
static void
master_reload_end(struct master *m, unsigned generation)
{
	struct reload *r = &m->reload;

	evtimer_del(r->timer);
	r->phase = RELOAD_IDLE;
	control_reload_done(m->ctl, generation, r->errors, r->warnings);
}

/* The errors are in m->reload.errors: stop what was started. */
static void
master_reload_fail(struct master *m)
{
	struct reload *r = &m->reload;
	struct runtime *rt = r->rt;
	unsigned stopped = 0;

	if (r->phase == RELOAD_IDLE)
		return;
	metrics_note_reload(false);
	metrics_http_abandon(m->metrics);
	master_resolver_stop(m);
	cfg_free(r->cfg);
	r->cfg = NULL;
	if (rt != NULL) {
		int64_t deadline = master_drain_deadline(m);

		for (size_t i = 0; i < m->nworkers; i++) {
			struct child *c = m->workers[i];

			if (c != NULL && c->start_rt == rt) {
				master_worker_free(m, c);
				continue;
			}
			if (c == NULL || c->rt != rt)
				continue;
			master_drain_child(m, c, deadline);
			stopped++;
		}
		/* Its own sockets close now; the ones it shares with the
		 * running generation stay. */
		runtime_abandon(rt);
		r->rt = NULL;
		master_rt_gc(m, rt);
	}
	if (stopped > 0)
		log_info("reload: %u worker(s) of generation %u stopped "
		    "(sessions they accepted may finish)", stopped,
		    r->generation);
	log_errx("reload failed: generation %u keeps running with the "
	    "configuration it has", m->rt->generation);
	if (notify_send("READY=1\nSTATUS=ready (reload failed)") == -1)
		log_warn("sd_notify READY=1");
	master_reload_end(m, 0);
}

static void
master_reload_commit(struct master *m)
{
	struct reload *r = &m->reload;
	struct runtime *old = m->rt, *rt = r->rt;
	int64_t deadline = master_drain_deadline(m);
	unsigned started = 0, draining = 0;
	struct rt_diff d;

	runtime_commit(rt, old, &m->slots, &d);
	m->rt = rt;
	r->rt = NULL;
	control_set_runtime(m->ctl, rt);
	denyctl_set_config(rt->cfg);
	metrics_http_commit(m->metrics);
	metrics_note_reload(true);
	log_setup(rt->cfg);
	/* Removed listeners close now (the old workers close their copies
	 * on SIGTERM); the runtime stays while its children drain. */
	runtime_close(old);
	for (size_t i = 0; i < m->nworkers; i++) {
		struct child *c = m->workers[i];

		if (c == NULL || c->draining)
			continue;
		if (c->pid != 0 && c->rt == rt) {
			started++;
			continue;
		}
		if (c->pid == 0) {
			/* Waiting to be respawned: not in the old generation
			 * any more. */
			master_worker_free(m, c);
			continue;
		}
		master_drain_child(m, c, deadline);
		draining++;
	}
	if (m->health.pid != 0)
		master_drain_child(m, &m->health, deadline);
	else if (!m->health.respawn_pending && !m->health.draining &&
	    master_spawn(m, &m->health, rt) == -1)
		master_respawn(m, &m->health);
	master_rt_gc(m, old);
	log_info("reload: generation %u running: %u worker(s) started, %u of "
	    "the previous generation draining; listeners %u kept, %u added, "
	    "%u removed; servers %u kept, %u added, %u removed (%.1f s)",
	    rt->generation, started, draining, d.listeners_kept,
	    d.listeners_added, d.listeners_removed, d.servers_kept,
	    d.servers_added, d.servers_removed,
	    (double)(net_now_us() - r->started_us) / 1e6);
	if (notify_send("READY=1\nSTATUS=ready") == -1)
		log_warn("sd_notify READY=1");
	master_reload_end(m, rt->generation);
}

/* bind + fork: the names are resolved; start the new generation. */
static void
master_reload_start_workers(struct master *m, struct config *cfg)
{
	struct reload *r = &m->reload;
	char err[RELOAD_ERR_MAX];
	struct runtime *rt;

	err[0] = '\0';
	if (metrics_http_prepare(m->metrics, cfg->metrics.enabled ?
	    &cfg->metrics.bind : NULL, err, sizeof(err)) == -1) {
		master_reload_error(m, "%s", err);
		cfg_free(cfg);
		master_reload_fail(m);
		return;
	}
	rt = runtime_new(cfg, r->generation, m->rt, &m->slots, err,
	    sizeof(err));
	if (rt == NULL) {
		master_log_lines("reload: ", err);
		for (const char *p = err, *nl; (nl = strchr(p, '\n')) != NULL;
		    p = nl + 1) {
			char line[1024];

			snprintf(line, sizeof(line), "%.*s", (int)(nl - p), p);
			master_lines_add(r->errors, sizeof(r->errors), line);
		}
		cfg_free(cfg);
		master_reload_fail(m);
		return;
	}
	master_rt_add(m, rt);
	r->rt = rt;
	r->phase = RELOAD_STARTING;
	runtime_hold(rt, &m->slots);
	control_apply_admin(m->ctl, rt);
	if (master_start_workers(m, rt, cfg->workers) == -1) {
		master_reload_error(m, "workers: no room for %u new worker(s): "
		    "at most %u worker processes at once, counting those of "
		    "older generations still draining", cfg->workers,
		    SHM_MAX_WORKER_SLOTS);
		master_reload_fail(m);
		return;
	}
	log_info("reload: generation %u: starting %u worker(s); waiting for "
	    "them to accept", r->generation, cfg->workers);
	r->nready = 0;
	r->ready_by_us = net_now_us() + (int64_t)READY_MAX_MS * 1000;
	master_reload_ready_timer(m);
}

/* Every answer is in (or the time is up): apply them, then go on. */
static void
master_resolve_done(struct master *m, const char *missing)
{
	struct reload *r = &m->reload;
	struct config *cfg = r->cfg;
	char err[300];

	for (size_t i = 0; i < cfg->nhosts; i++) {
		if (r->resolved[i])
			continue;
		snprintf(err, sizeof(err), "cannot resolve host \"%s\": %s",
		    cfg->hosts[i].name, missing);
		(void)cfg_host_apply(cfg, i, NULL, err, &r->diag);
	}
	if (r->diag.nerrors == 0)
		(void)cfg_hosts_finish(cfg, &r->diag);
	if (r->diag.file == NULL && cfg->path != NULL)
		r->diag.file = strdup(cfg->path);
	master_reload_diag(m, &r->diag);
	evtimer_del(r->timer);
	if (r->diag.nerrors > 0) {
		master_reload_fail(m);
		return;
	}
	r->cfg = NULL;
	master_resolver_stop(m);
	log_info("reload: %zu host name(s) resolved in %.1f s", cfg->nhosts,
	    (double)(net_now_us() - r->started_us) / 1e6);
	master_reload_start_workers(m, cfg);
}

static void
master_on_resolver(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	struct reload *r = &m->reload;
	char *p = (char *)&r->msg;
	size_t done = 0;
	ssize_t n;

	for (;;) {
		n = read(fd, p + r->msg_len, sizeof(r->msg) - r->msg_len);
		if (n <= 0)
			break;
		r->msg_len += (size_t)n;
		if (r->msg_len < sizeof(r->msg))
			continue;
		r->msg_len = 0;
		if (r->msg.idx >= r->cfg->nhosts || r->resolved[r->msg.idx])
			continue;
		r->resolved[r->msg.idx] = true;
		r->msg.err[sizeof(r->msg.err) - 1] = '\0';
		(void)cfg_host_apply(r->cfg, r->msg.idx, r->msg.ok ?
		    &r->msg.addr : NULL, r->msg.err, &r->diag);
	}
	for (size_t i = 0; i < r->cfg->nhosts; i++)
		done += r->resolved[i];
	if (done < r->cfg->nhosts && n == -1 &&
	    (errno == EAGAIN || errno == EINTR))
		return;
	master_resolve_done(m, "the resolver process ended without an "
	    "answer");
}

static void
master_on_reload_timer(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	struct reload *r = &m->reload;
	unsigned ready, running, pending;

	if (r->phase == RELOAD_RESOLVING) {
		char why[64];

		snprintf(why, sizeof(why), "no answer within %d s",
		    RESOLVE_TIMEOUT_MS / 1000);
		master_resolve_done(m, why);
		return;
	}
	if (r->phase != RELOAD_STARTING)
		return;
	master_count_ready(m, r->rt, &ready, &running, &pending);
	if (net_now_us() >= r->ready_by_us)
		master_reload_error(m, "the new workers did not all say they "
		    "are accepting within %d s (%u of %u did)",
		    READY_MAX_MS / 1000, ready, r->rt->cfg->workers);
	else
		master_reload_error(m, "no new worker said it is accepting for "
		    "%d s (%u of %u did)", READY_QUIET_MS / 1000, ready,
		    r->rt->cfg->workers);
	master_reload_fail(m);
}

/* Fork the resolver child: it looks every name up with getaddrinfo (NSS,
 * as at start) and writes one message per name. */
static int
master_resolver_start(struct master *m)
{
	struct reload *r = &m->reload;
	struct config *cfg = r->cfg;
	sigset_t all, old;
	int fds[2];
	pid_t pid;

	r->resolved = calloc(cfg->nhosts, sizeof(*r->resolved));
	if (r->resolved == NULL || pipe2(fds, O_CLOEXEC) == -1)
		return -1;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == -1) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		child_close_fds(&fds[1], 1);
		for (size_t i = 0; i < cfg->nhosts; i++) {
			struct resolver_msg msg;

			memset(&msg, 0, sizeof(msg));
			msg.idx = (uint32_t)i;
			msg.ok = cfg_host_lookup(&cfg->hosts[i], &msg.addr,
			    msg.err, sizeof(msg.err)) == 0;
			if (write(fds[1], &msg, sizeof(msg)) != sizeof(msg))
				_exit(1);
		}
		_exit(0);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(fds[1]);
	r->resolver = pid;
	r->resolver_fd = fds[0];
	r->msg_len = 0;
	if (evutil_make_socket_nonblocking(fds[0]) == -1 ||
	    (r->resolver_ev = event_new(m->base, fds[0], EV_READ | EV_PERSIST,
	    master_on_resolver, m)) == NULL ||
	    event_add(r->resolver_ev, NULL) == -1)
		return -1;
	return 0;
}

/*
 * Start a reload. -1 with the reason in err when it cannot start now;
 * otherwise 0, and the outcome goes to control_reload_done() (possibly
 * before this returns).
 */
static int
master_reload_begin(struct master *m, const char *who, char *err,
    size_t cap)
{
	struct reload *r = &m->reload;
	struct cfg_diag diag = { 0 };
	struct config *cfg;

	if (m->stopping) {
		snprintf(err, cap, "smtpfront is stopping");
		return -1;
	}
	if (r->phase != RELOAD_IDLE) {
		snprintf(err, cap, "a reload is already in progress "
		    "(generation %u is %s); try again when it is over",
		    r->generation, r->phase == RELOAD_RESOLVING ?
		    "resolving host names" : "starting");
		return -1;
	}
	log_info("reload requested by %s", who);
	r->errors[0] = r->warnings[0] = '\0';
	r->generation = m->rt->generation + 1;
	r->started_us = net_now_us();
	r->phase = RELOAD_RESOLVING;
	if (notify_send("RELOADING=1\nSTATUS=reloading") == -1)
		log_warn("sd_notify RELOADING=1");
	cfg = cfg_load_file(m->rt->cfg->path, &diag);
	master_reload_diag(m, &diag);
	cfg_diag_free(&diag);
	if (cfg == NULL) {
		master_reload_fail(m);
		return 0;
	}
	master_keep_fixed(m, m->rt->cfg, cfg);
	if (cfg->nhosts == 0) {
		master_reload_start_workers(m, cfg);
		return 0;
	}
	r->cfg = cfg;
	if (master_resolver_start(m) == -1) {
		master_reload_error(m, "cannot start the resolver process: %s",
		    strerror(errno));
		master_reload_fail(m);
		return 0;
	}
	log_info("reload: resolving %zu host name(s)", cfg->nhosts);
	master_reload_timer_set(m, RESOLVE_TIMEOUT_MS);
	return 0;
}

static int
master_control_reload(void *arg, const char *who, char *err, size_t cap)
{
	return master_reload_begin(arg, who, err, cap);
}

/* ------------------------------------------------------------ signals */

static void
master_on_signal(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	struct signalfd_siginfo si;
	char err[512];

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
			log_info("received SIGHUP: reloading");
			if (master_reload_begin(m, "SIGHUP", err,
			    sizeof(err)) == -1)
				log_warnx("SIGHUP: %s", err);
			break;
		}
	}
}

/* The control socket's view of the children: running workers only. */
static size_t
master_control_workers(void *arg, struct control_worker *out, size_t cap)
{
	const struct master *m = arg;
	size_t n = 0;

	for (size_t i = 0; i < m->nworkers && n < cap; i++) {
		const struct child *c = m->workers[i];

		if (c == NULL || c->pid == 0)
			continue;
		out[n].pid = c->pid;
		out[n].generation = c->generation;
		out[n].slot = c->slot;
		out[n].draining = c->draining;
		n++;
	}
	return n;
}

/* What GET /metrics and `smtpfrontctl metrics` answer. */
static void
master_render_metrics(struct evbuffer *out, void *arg)
{
	const struct master *m = arg;

	control_metrics(m->ctl, out);
}

/*
 * The master's loop: its own events at the default priority, the metrics
 * endpoint's renderings below them, and at most one of those runs before
 * the loop looks for new events again, so scrapers never hold up a
 * signal, a child or the control socket for more than one rendering.
 */
static struct event_base *
master_event_base(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;

	if (ec == NULL ||
	    event_config_set_max_dispatch_interval(ec, NULL, 1,
	    METRICS_HTTP_PRIORITY) == -1 ||
	    (base = event_base_new_with_config(ec)) == NULL)
		fatalx("cannot set up the master's event loop");
	event_config_free(ec);
	/* Before any event: events take the default (middle) priority. */
	if (event_base_priority_init(base, METRICS_HTTP_PRIORITIES) == -1)
		fatalx("cannot set up the master's event priorities");
	return base;
}

int
master_run(struct config *cfg)
{
	struct master *m = &master;
	struct timeval drain_tick = { 1, 0 };
	static char err[RELOAD_ERR_MAX];
	sigset_t set;

	memset(m, 0, sizeof(*m));
	metrics_master_start();
	if (!cfg->sandbox)
		log_warnx("sandbox: off (sandbox: false): workers and the "
		    "health process run without their system call filter");
	else if (sandbox_unavailable() != NULL)
		log_info("sandbox: off: %s", sandbox_unavailable());
	m->reload.resolver_fd = -1;
	m->health.kind = CHILD_HEALTH;
	m->health.chan = -1;
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
	/* Later loads are reloads: host names go to the resolver child. */
	cfg_set_resolve_mode(CFG_RESOLVE_DEFER);

	m->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (m->kick_fd == -1)
		fatal("eventfd");
	/* Before the shared memory: its per-worker tables are sized for the
	 * sessions a worker can hold. */
	{
		unsigned long limit = fdplan_raise();
		char msg[512];

		log_info("descriptors: limit %lu, up to %u sessions per worker, "
		    "%lu in all", limit, fdplan_worker_sessions(limit,
		    fdplan_binds(cfg)), fdplan_check(cfg, limit, msg,
		    sizeof(msg)));
		if (msg[0] != '\0')
			log_warnx("%s", msg);
	}
	clients_shm_register(cfg);
	shm_create(cfg);
	metrics_master_attach();
	deny_create();
	clients_rate_retired_create();
	err[0] = '\0';
	m->rt = runtime_new(cfg, 1, NULL, &m->slots, err, sizeof(err));
	if (m->rt == NULL) {
		master_log_lines("", err);
		cfg_free(cfg);
		fatalx("cannot start");
	}
	master_rt_add(m, m->rt);
	runtime_hold(m->rt, &m->slots);
	runtime_commit(m->rt, NULL, &m->slots, NULL);

	m->base = master_event_base();
	m->sig_ev = event_new(m->base, m->sigfd, EV_READ | EV_PERSIST,
	    master_on_signal, m);
	m->respawn_timer = evtimer_new(m->base, master_on_respawn, m);
	m->kill_timer = evtimer_new(m->base, master_on_kill_timer, m);
	m->drain_timer = event_new(m->base, -1, EV_PERSIST,
	    master_on_drain_timer, m);
	m->start_timer = evtimer_new(m->base, master_on_start_timer, m);
	m->reload.timer = evtimer_new(m->base, master_on_reload_timer, m);
	m->spawn_timer = evtimer_new(m->base, master_on_spawn, m);
	if (m->sig_ev == NULL || m->respawn_timer == NULL ||
	    m->kill_timer == NULL || m->drain_timer == NULL ||
	    m->start_timer == NULL || m->reload.timer == NULL ||
	    m->spawn_timer == NULL ||
	    event_add(m->sig_ev, NULL) == -1 ||
	    event_add(m->drain_timer, &drain_tick) == -1)
		fatalx("cannot set up the master's events");
	denyctl_start(m->base, cfg);
	m->ctl = control_new(m->base, m->rt, master_control_workers,
	    master_control_reload, m);
	if (m->ctl == NULL)
		fatalx("cannot serve the control socket %s",
		    cfg->control.socket);
	m->metrics = metrics_http_new(m->base, master_render_metrics, m);
	if (m->metrics == NULL)
		fatalx("cannot set up the metrics endpoint");
	if (metrics_http_prepare(m->metrics, cfg->metrics.enabled ?
	    &cfg->metrics.bind : NULL, err, sizeof(err)) == -1)
		fatalx("%s", err);
	metrics_http_commit(m->metrics);

	if (master_start_workers(m, m->rt, cfg->workers) == -1)
		fatalx("no room for %u workers", cfg->workers);
	if (master_spawn(m, &m->health, m->rt) == -1)
		fatalx("cannot start the health process");
	master_timer_add(m->start_timer, READY_QUIET_MS);

	event_base_dispatch(m->base);

	master_kill_all(m, SIGKILL);
	if (m->reload.phase != RELOAD_IDLE) {
		master_reload_error(m, "smtpfront is exiting");
		master_reload_fail(m);
	}
	metrics_http_free(m->metrics);
	control_free(m->ctl);
	denyctl_stop();
	for (size_t i = 0; i < m->nworkers; i++)
		if (m->workers[i] != NULL)
			master_worker_free(m, m->workers[i]);
	free(m->workers);
	master_chan_close(&m->health);
	event_free(m->sig_ev);
	event_free(m->respawn_timer);
	event_free(m->kill_timer);
	event_free(m->drain_timer);
	event_free(m->start_timer);
	event_free(m->reload.timer);
	event_free(m->spawn_timer);
	close(m->sigfd);
	close(m->kick_fd);
	for (size_t i = 0; i < m->nrts; i++)
		runtime_free(m->rts[i]);
	free(m->rts);
	runtime_slots_free(&m->slots);
	event_base_free(m->base);
	log_info("stopped");
	return m->exit_code;
}
