/* SPDX-License-Identifier: MIT */
/*
 * master: binds the listeners, creates shared memory, forks the workers,
 * respawns children that die (rate-limited, never one that failed on its
 * config), reloads on SIGHUP or `reload`, upgrades in place on SIGUSR2 or
 * `upgrade` and turns SIGTERM/SIGINT into a graceful stop. Signals arrive
 * through a signalfd as ordinary events. This file: the loop, signals, the
 * control glue and the start; children.c forks and reaps, generation.c
 * runs the steps below, stop.c the stop, upgrade.c the exec and the
 * take-over, fdstore.c systemd's descriptor store.
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

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/deny.h"
#include "core/log.h"
#include "core/master/control.h"
#include "core/master/denyctl.h"
#include "core/master/master.h"
#include "core/master/metrics_http.h"
#include "core/metrics.h"
#include "core/runtime.h"
#include "core/shm.h"
#include "core/worker/clients.h"
#include "core/worker/fdplan.h"
#include "core/master/master_int.h"

struct master master;

/* ------------------------------------------------------------ helpers */

/* Append a line to buf (lines separated by '\n'). */
void
master_lines_add(char *buf, size_t cap, const char *line)
{
	size_t off = strlen(buf);

	if (off + 2 < cap)
		snprintf(buf + off, cap - off, "%s\n", line);
}

/* Log each '\n'-terminated line of text as an error. */
void
master_log_lines(const char *prefix, const char *text)
{
	const char *nl;

	for (; (nl = strchr(text, '\n')) != NULL; text = nl + 1)
		log_errx("%s%.*s", prefix, (int)(nl - text), text);
}

/* A reload error: logged, and kept for the answer. */
void
master_timer_add(struct event *ev, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(ev, &tv);
}

static int
master_control_reload(void *arg, const char *who, char *err, size_t cap)
{
	return master_reload_begin(arg, who, err, cap);
}

static int
master_control_upgrade(void *arg, const char *who, const char *binary,
    char *err, size_t cap)
{
	return master_upgrade_begin(arg, who, binary, err, cap);
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
		case SIGUSR2:
			log_info("received SIGUSR2: upgrading");
			if (master_upgrade_begin(m, "SIGUSR2", NULL, err,
			    sizeof(err)) == -1)
				log_warnx("SIGUSR2: %s", err);
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

void
master_init(struct master *m)
{
	memset(m, 0, sizeof(*m));
	m->reload.resolver_fd = -1;
	m->health.kind = CHILD_HEALTH;
	m->health.chan = -1;
	m->sigfd = m->kick_fd = -1;
}

/* Signals become events: blocked, and read from a signalfd. (After an
 * upgrade's exec they are blocked already: the mask survives exec, and
 * so does a SIGCHLD that came meanwhile.) */
void
master_setup_signals(struct master *m)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		fatal("sigprocmask");
	m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m->sigfd == -1)
		fatal("signalfd");
}

void
master_setup_events(struct master *m)
{
	struct timeval drain_tick = { 1, 0 };

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
	m->metrics = metrics_http_new(m->base, master_render_metrics, m);
	if (m->metrics == NULL)
		fatalx("cannot set up the metrics endpoint");
}

/* The control socket: a new one, or (fd != -1) the previous image's. */
void
master_setup_control(struct master *m, int fd)
{
	m->ctl = control_new(m->base, m->rt, master_control_workers,
	    master_control_reload, master_control_upgrade, m, fd);
	if (m->ctl == NULL)
		fatalx("cannot serve the control socket %s",
		    m->rt->cfg->control.socket);
}

void
master_set_argv(char **argv)
{
	master.argv = argv;
}

int
master_run(struct config *cfg)
{
	struct master *m = &master;
	static char err[RELOAD_ERR_MAX];
	char **argv = m->argv;
	ssize_t n;

	master_init(m);
	m->argv = argv;
	/* The file an upgrade execs by default: this one, by the path it
	 * has now (a package upgrade puts the new binary there). */
	n = readlink("/proc/self/exe", m->exe, sizeof(m->exe) - 1);
	m->exe[n > 0 ? n : 0] = '\0';
	memcpy(m->binary, m->exe, sizeof(m->binary));
	metrics_master_start();
	if (!cfg->sandbox)
		log_warnx("sandbox: off (sandbox: false): workers and the "
		    "health process run without their system call filter");
	else if (sandbox_unavailable() != NULL)
		log_info("sandbox: off: %s", sandbox_unavailable());
	master_setup_signals(m);
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
	master_listen_fds();
	m->rt = runtime_new(cfg, 1, NULL, &m->slots, err, sizeof(err));
	runtime_inherit_done(master_fdstore_forget);
	if (m->rt == NULL) {
		master_log_lines("", err);
		cfg_free(cfg);
		fatalx("cannot start");
	}
	/* What an upgrade hands to the next image (the file as it is now:
	 * it was parsed a moment ago). */
	if (cfg->path != NULL)
		m->rt->source = master_read_source(cfg->path,
		    &m->rt->source_len);
	master_rt_add(m, m->rt);
	runtime_hold(m->rt, &m->slots);
	runtime_commit(m->rt, NULL, &m->slots, NULL);

	master_setup_events(m);
	denyctl_start(m->base, cfg);
	master_setup_control(m, -1);
	if (metrics_http_prepare(m->metrics, cfg->metrics.enabled ?
	    &cfg->metrics.bind : NULL, err, sizeof(err)) == -1)
		fatalx("%s", err);
	metrics_http_commit(m->metrics);

	if (master_start_workers(m, m->rt, cfg->workers) == -1)
		fatalx("no room for %u workers", cfg->workers);
	if (master_spawn(m, &m->health, m->rt) == -1)
		fatalx("cannot start the health process");
	master_timer_add(m->start_timer, READY_QUIET_MS);
	return master_loop(m);
}

int
master_loop(struct master *m)
{
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
