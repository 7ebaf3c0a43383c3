/* SPDX-License-Identifier: MIT */
/*
 * master: binds the listeners, creates shared memory, forks the workers,
 * respawns children that die (rate-limited, never one that failed on its
 * config), reloads on SIGHUP or `reload` and turns SIGTERM/SIGINT into a
 * graceful stop. Signals arrive through a signalfd as ordinary events.
 *
 * Reload: the new config is loaded and its runtime built (listening sockets
 * of unchanged bind addresses taken over, new ones bound) before anything
 * changes; then the new generation of workers is forked, the old workers
 * get SIGTERM (they close their listener copies at once and finish their
 * sessions), and the health process is restarted once the old one exited,
 * so each health record keeps a single writer. The master holds every
 * listening socket throughout, so no connection is refused.
 */
#include <sys/eventfd.h>
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

#include "core/child.h"
#include "core/clients.h"
#include "core/control.h"
#include "core/fdplan.h"
#include "core/health.h"
#include "core/log.h"
#include "core/master.h"
#include "core/net.h"
#include "core/notify.h"
#include "core/runtime.h"
#include "core/shm.h"
#include "core/worker.h"

/* Room for the errors of one reload, as lines. */
#define RELOAD_ERR_MAX		16384

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
	bool used;			/* false = entry free */
	pid_t pid;			/* 0 = not running */
	enum child_kind kind;
	unsigned slot;			/* shm worker slot (= index) */
	unsigned generation;
	int64_t started_us;
	unsigned quick_deaths;
	bool respawn_pending;
	bool draining;			/* an older generation, told to stop */
	int64_t deadline_us;		/* draining: killed after this */
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
	struct event *drain_timer;	/* kills draining children past due */
	struct rt_slots slots;
	int pipe_r;			/* children watch it: EOF = master died */
	int kick_fd;			/* wakes one listening worker (worker.c) */
	int pipe_w;
	struct control *ctl;
	bool stopping;
	int exit_code;
};

static struct master master;

static void master_spawn(struct master *m, struct child *c);

/* In a fresh child: keep the master pipe and, for a worker, the listening
 * sockets; close everything else, then reopen syslog if it is used. */
static void
master_child_fds(struct master *m, const struct child *c)
{
	size_t n = 2;
	int *keep;

	for (size_t i = 0; i < m->rt->nlisteners; i++)
		n += m->rt->listeners[i].nbinds;
	if ((keep = calloc(n, sizeof(*keep))) == NULL)
		fatal("calloc");
	n = 0;
	keep[n++] = m->pipe_r;
	if (c->kind == CHILD_WORKER)
		keep[n++] = m->kick_fd;
	for (size_t i = 0; c->kind == CHILD_WORKER && i < m->rt->nlisteners;
	    i++)
		for (size_t j = 0; j < m->rt->listeners[i].nbinds; j++)
			keep[n++] = m->rt->listeners[i].binds[j].fd;
	child_close_fds(keep, n);
	free(keep);
	log_setup(m->rt->cfg->log.target == CFG_LOG_SYSLOG,
	    m->rt->cfg->log.facility, m->rt->cfg->log.level);
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
		struct timeval tv = { RESPAWN_DELAY_MS / 1000,
		    (RESPAWN_DELAY_MS % 1000) * 1000 };

		log_warn("fork");
		sigprocmask(SIG_SETMASK, &old, NULL);
		c->pid = 0;
		c->respawn_pending = true;
		evtimer_add(m->respawn_timer, &tv);
		return;
	}
	if (pid == 0) {
		master_child_fds(m, c);
		sigprocmask(SIG_SETMASK, &old, NULL);
		if (c->kind == CHILD_HEALTH)
			health_main(m->rt, m->pipe_r);
		worker_main(m->rt, c->slot, m->pipe_r, m->kick_fd);
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

/* A child of an older generation exited. */
static void
master_reap_draining(struct master *m, struct child *c, pid_t pid,
    int status)
{
	c->draining = false;
	if (WIFSIGNALED(status))
		log_warnx("%s %u (pid %ld, generation %u) killed by signal %d "
		    "while draining", child_kind_names[c->kind], c->slot,
		    (long)pid, c->generation, WTERMSIG(status));
	else
		log_info("%s %u (pid %ld, generation %u) finished",
		    child_kind_names[c->kind], c->slot, (long)pid,
		    c->generation);
	if (c->kind == CHILD_HEALTH && !m->stopping) {
		/* Only now: one writer per health record at any time. */
		c->quick_deaths = 0;
		master_spawn(m, c);
		if (c->pid != 0)
			log_info("health process of generation %u started as "
			    "pid %ld", c->generation, (long)c->pid);
		return;
	}
	c->used = false;
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
		if (c->kind == CHILD_WORKER) {
			shm_slot_reset(c->slot);
			clients_slot_reset(c->slot);
			/* A connection that woke it may still wait. */
			worker_kick(m->kick_fd);
		}
		if (c->draining) {
			master_reap_draining(m, c, pid, status);
			continue;
		}
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
			c->used = false;
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
	for (size_t i = 0; i < m->nchildren; i++) {
		/* A draining child already has its SIGTERM; a second one
		 * would cut its sessions at once. */
		if (sig == SIGTERM && m->children[i].draining)
			continue;
		if (m->children[i].pid != 0)
			kill(m->children[i].pid, sig);
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

/* The oldest generation a running child still belongs to. */
static unsigned
master_oldest_generation(const struct master *m)
{
	unsigned oldest = m->rt->generation;

	for (size_t i = 0; i < m->nchildren; i++)
		if (m->children[i].used && m->children[i].pid != 0 &&
		    m->children[i].generation < oldest)
			oldest = m->children[i].generation;
	return oldest;
}

static struct child *
master_free_child(struct master *m)
{
	for (size_t i = 0; i < SHM_MAX_WORKERS; i++) {
		struct child *c = &m->children[i];

		if (c->used)
			continue;
		memset(c, 0, sizeof(*c));
		c->used = true;
		c->slot = (unsigned)i;
		c->generation = m->rt->generation;
		if (i >= m->nchildren)
			m->nchildren = i + 1;
		return c;
	}
	return NULL;
}

static size_t
master_free_children(const struct master *m)
{
	size_t n = 0;

	for (size_t i = 0; i < SHM_MAX_WORKERS; i++)
		n += !m->children[i].used;
	return n;
}

static void
master_on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	int64_t now = net_now_us();

	for (size_t i = 0; i < m->nchildren; i++) {
		struct child *c = &m->children[i];

		if (c->used && c->draining && c->pid != 0 &&
		    now > c->deadline_us) {
			log_warnx("%s %u (pid %ld, generation %u) still running "
			    "after shutdown_timeout; killing it",
			    child_kind_names[c->kind], c->slot, (long)c->pid,
			    c->generation);
			kill(c->pid, SIGKILL);
			c->deadline_us = INT64_MAX;
		}
	}
}

/* Log each '\n'-terminated line of text as an error. */
static void
master_log_lines(const char *prefix, const char *text)
{
	const char *nl;

	for (; (nl = strchr(text, '\n')) != NULL; text = nl + 1)
		log_errx("%s%.*s", prefix, (int)(nl - text), text);
}

/* Append line to err (lines separated by '\n'). */
static void
master_err_add(char *err, size_t cap, const char *line)
{
	size_t off = strlen(err);

	if (off + 2 < cap)
		snprintf(err + off, cap - off, "%s\n", line);
}

/* user, group and control are fixed for the life of the master. */
static void
master_keep_fixed(const struct config *old, struct config *cfg)
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
		log_warnx("reload: %s changed from \"%s\" to \"%s\": that "
		    "needs a restart; keeping \"%s\"", str[i].key,
		    str[i].oldv, str[i].newv, str[i].oldv);
		snprintf(str[i].newv, str[i].cap, "%s", str[i].oldv);
	}
	if (cfg->control.mode != old->control.mode) {
		snprintf(o, sizeof(o), "%04o", old->control.mode);
		snprintf(n, sizeof(n), "%04o", cfg->control.mode);
		log_warnx("reload: control.mode changed from %s to %s: that "
		    "needs a restart; keeping %s", o, n, o);
		cfg->control.mode = old->control.mode;
	}
}

/*
 * Reload the config file. Returns the new generation, or 0 with every
 * reason in err (lines); the running generation is then untouched.
 */
static unsigned
master_reload(struct master *m, char *err, size_t cap)
{
	struct runtime *old = m->rt, *rt;
	struct cfg_diag diag = { 0 };
	struct config *cfg;
	struct rt_diff d;
	unsigned gen = old->generation + 1, started = 0, draining = 0;
	unsigned ms = old->cfg->shutdown_timeout_ms + STOP_GRACE_MS;
	char line[512];
	int64_t deadline = net_now_us() + (int64_t)ms * 1000;

	err[0] = '\0';
	if (m->stopping) {
		master_err_add(err, cap, "smtpfront is stopping");
		return 0;
	}
	if (notify_send("RELOADING=1\nSTATUS=reloading") == -1)
		log_warn("sd_notify RELOADING=1");
	cfg = cfg_load_file(old->cfg->path, &diag);
	for (size_t i = 0; i < diag.n; i++) {
		const struct cfg_diag_entry *e = &diag.entries[i];
		const char *file = diag.file != NULL ? diag.file : "-";

		if (e->line == 0)
			snprintf(line, sizeof(line), "%s: %s", file,
			    e->message);
		else
			snprintf(line, sizeof(line), "%s:%u:%u: %s",
			    file, e->line, e->column, e->message);
		if (e->severity == CFG_WARNING) {
			log_warnx("reload: %s", line);
		} else {
			log_errx("reload: %s", line);
			master_err_add(err, cap, line);
		}
	}
	cfg_diag_free(&diag);
	rt = NULL;
	if (cfg != NULL) {
		master_keep_fixed(old->cfg, cfg);
		if (master_free_children(m) < cfg->workers) {
			snprintf(line, sizeof(line), "no room for %u new "
			    "workers: %zu worker processes of older "
			    "generations are still draining", cfg->workers,
			    SHM_MAX_WORKERS - master_free_children(m));
			log_errx("reload: %s", line);
			master_err_add(err, cap, line);
		} else {
			size_t off = strlen(err);

			rt = runtime_new(cfg, gen, old, &m->slots,
			    master_oldest_generation(m), err, cap);
			if (rt == NULL)
				master_log_lines("reload: ", err + off);
		}
		if (rt == NULL)
			cfg_free(cfg);
	}
	if (rt == NULL) {
		log_errx("reload failed: generation %u keeps running with the "
		    "configuration it has", old->generation);
		if (notify_send("READY=1\nSTATUS=ready (reload failed)") == -1)
			log_warn("sd_notify READY=1");
		return 0;
	}

	runtime_commit(rt, old, &m->slots, &d);
	m->rt = rt;
	control_set_runtime(m->ctl, rt);
	log_setup(rt->cfg->log.target == CFG_LOG_SYSLOG, rt->cfg->log.facility,
	    rt->cfg->log.level);

	/* Close removed listeners before forking: no child may inherit
	 * them. The new generation first, so somebody always accepts. */
	runtime_free(old);
	old = NULL;
	for (unsigned i = 0; i < rt->cfg->workers; i++) {
		struct child *c = master_free_child(m);

		c->kind = CHILD_WORKER;
		master_spawn(m, c);
		started++;
	}
	for (size_t i = 0; i < m->nchildren; i++) {
		struct child *c = &m->children[i];

		if (!c->used || c->draining || c->generation == gen)
			continue;
		if (c->pid == 0) {
			/* Waiting to be respawned: start as the new
			 * generation (health) or not at all (worker). */
			if (c->kind == CHILD_WORKER) {
				c->used = false;
				c->respawn_pending = false;
			}
			continue;
		}
		c->draining = true;
		c->deadline_us = deadline;
		kill(c->pid, SIGTERM);
		if (c->kind == CHILD_WORKER)
			draining++;
	}

	log_info("reload: generation %u running: %u worker(s) started, %u of "
	    "the previous generation draining; listeners %u kept, %u added, "
	    "%u removed; servers %u kept, %u added, %u removed", gen, started,
	    draining, d.listeners_kept, d.listeners_added, d.listeners_removed,
	    d.servers_kept, d.servers_added, d.servers_removed);
	if (notify_send("READY=1\nSTATUS=ready") == -1)
		log_warn("sd_notify READY=1");
	return gen;
}

static unsigned
master_control_reload(void *arg, char *err, size_t cap)
{
	return master_reload(arg, err, cap);
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
		case SIGHUP: {
			static char err[RELOAD_ERR_MAX];

			log_info("received SIGHUP: reloading");
			(void)master_reload(m, err, sizeof(err));
			break;
		}
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
		out[n].draining = c->draining;
		n++;
	}
	return n;
}

int
master_run(struct config *cfg)
{
	struct master *m = &master;
	struct timeval drain_tick = { 1, 0 };
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
	m->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (m->kick_fd == -1)
		fatal("eventfd");

	shm_create();
	{
		unsigned long limit = fdplan_raise();
		unsigned per = fdplan_worker_sessions(limit,
		    fdplan_binds(cfg));
		char msg[512];

		clients_create(SHM_MAX_WORKERS, per);
		log_info("descriptors: limit %lu, up to %u sessions per worker, "
		    "%lu in all", limit, per,
		    fdplan_check(cfg, limit, msg, sizeof(msg)));
		if (msg[0] != '\0')
			log_warnx("%s", msg);
	}
	{
		static char err[RELOAD_ERR_MAX];

		err[0] = '\0';
		m->rt = runtime_new(cfg, 1, NULL, &m->slots, 1, err,
		    sizeof(err));
		if (m->rt == NULL) {
			master_log_lines("", err);
			cfg_free(cfg);
			fatalx("cannot start");
		}
		runtime_commit(m->rt, NULL, &m->slots, NULL);
	}

	m->base = event_base_new();
	if (m->base == NULL)
		fatalx("event_base_new");
	m->sig_ev = event_new(m->base, m->sigfd, EV_READ | EV_PERSIST,
	    master_on_signal, m);
	m->respawn_timer = evtimer_new(m->base, master_on_respawn, m);
	m->kill_timer = evtimer_new(m->base, master_on_kill_timer, m);
	m->drain_timer = event_new(m->base, -1, EV_PERSIST,
	    master_on_drain_timer, m);
	if (m->sig_ev == NULL || m->respawn_timer == NULL ||
	    m->kill_timer == NULL || m->drain_timer == NULL ||
	    event_add(m->sig_ev, NULL) == -1 ||
	    event_add(m->drain_timer, &drain_tick) == -1)
		fatalx("cannot set up the master's events");
	m->ctl = control_new(m->base, m->rt, master_control_workers,
	    master_control_reload, m);
	if (m->ctl == NULL)
		fatalx("cannot serve the control socket %s",
		    cfg->control.socket);

	if (cfg->workers + 1 > SHM_MAX_WORKERS)
		fatalx("too many workers (at most %d)", SHM_MAX_WORKERS - 1);
	for (size_t i = 0; i < cfg->workers; i++) {
		struct child *c = master_free_child(m);

		c->kind = CHILD_WORKER;
		master_spawn(m, c);
	}
	master_free_child(m)->kind = CHILD_HEALTH;
	master_spawn(m, &m->children[m->nchildren - 1]);
	master_log_ready(m);
	if (notify_send("READY=1\nSTATUS=ready") == -1)
		log_warn("sd_notify READY=1");

	event_base_dispatch(m->base);

	master_kill_all(m, SIGKILL);
	control_free(m->ctl);
	event_free(m->sig_ev);
	event_free(m->respawn_timer);
	event_free(m->kill_timer);
	event_free(m->drain_timer);
	event_base_free(m->base);
	close(m->sigfd);
	close(m->pipe_r);
	close(m->pipe_w);
	close(m->kick_fd);
	runtime_free(m->rt);
	log_info("stopped");
	return m->exit_code;
}
