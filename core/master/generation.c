/* SPDX-License-Identifier: MIT */
/*
 * generation: runtimes held by the master, the first generation's start
 * and a reload's steps (parse, resolve, bind, fork, ready), committing a
 * new generation or failing back to the running one.
 */
#include <sys/socket.h>

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
#include "core/log.h"
#include "core/master/control.h"
#include "core/master/denyctl.h"
#include "core/master/metrics_http.h"
#include "core/master/notify.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/runtime.h"
#include "core/shm.h"
#include "core/master/master_int.h"

static void master_reload_commit(struct master *m);

/* ------------------------------------------------------------ runtimes */

void
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
void
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

/* ------------------------------------------------------------ ready */

void
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
void
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

void
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
			master_notify_ready(m->rt, "READY=1\nSTATUS=ready",
			    true);
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

void
master_on_start_timer(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	unsigned ready, running, pending;

	master_count_ready(m, m->rt, &ready, &running, &pending);
	log_warnx("start: %u of %u worker(s) said they are accepting after "
	    "%d s", ready, m->rt->cfg->workers, READY_QUIET_MS / 1000);
}

void __attribute__((format(printf, 2, 3)))
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

void __attribute__((format(printf, 2, 3)))
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
void
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

/* ------------------------------------------------------------ reload */

/* user, group and control are fixed for the life of the master. */
void
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
	free(r->source);
	r->source = NULL;
	master_reload_answer(m, generation);
}

void
master_reload_answer(struct master *m, unsigned generation)
{
	struct reload *r = &m->reload;

	if (!r->upgrade) {
		control_reload_done(m->ctl, generation, r->errors, r->warnings);
		return;
	}
	r->upgrade = false;
	metrics_note_upgrade(generation != 0 ? METRICS_UPGRADE_OK :
	    METRICS_UPGRADE_FAILED);
	if (generation != 0)
		log_info("upgrade: smtpfront %s (%s) runs generation %u",
		    SMTPFRONT_VERSION, m->binary, generation);
	else
		log_errx("upgrade: smtpfront %s (%s) could not start a "
		    "generation; the workers of generation %u, started by the "
		    "previous image, keep serving", SMTPFRONT_VERSION,
		    m->binary, m->rt->generation);
	control_upgrade_done(m->ctl, generation, m->binary, r->errors,
	    r->warnings);
}

char *
master_read_source(const char *path, size_t *len)
{
	size_t cap = 8192, n = 0, got;
	char *buf = malloc(cap), *nb;
	FILE *f = fopen(path, "re");

	if (f == NULL || buf == NULL) {
		if (f != NULL)
			fclose(f);
		free(buf);
		return NULL;
	}
	while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += got;
		if (n + 1 < cap)
			continue;
		if (cap > ((size_t)64 << 20) || (nb = realloc(buf,
		    cap * 2)) == NULL) {
			n = 0;
			break;
		}
		buf = nb;
		cap *= 2;
	}
	if (ferror(f) || n == 0) {
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* The errors are in m->reload.errors: stop what was started. */
void
master_reload_fail(struct master *m)
{
	struct reload *r = &m->reload;
	struct runtime *rt = r->rt;
	unsigned stopped = 0;

	if (r->phase == RELOAD_IDLE)
		return;
	if (!r->upgrade)
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
	if (!r->upgrade)
		metrics_note_reload(true);
	log_setup(rt->cfg);
	/* Removed listeners close now (the old workers close their copies
	 * on SIGTERM); the runtime stays while its children drain. */
	master_fdstore_remove(old);
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
	master_notify_ready(rt, "READY=1\nSTATUS=ready", false);
	master_reload_end(m, rt->generation);
}

/* bind + fork: the names are resolved; start the new generation. */
void
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
	rt->source = r->source;
	rt->source_len = r->source_len;
	r->source = NULL;
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

void
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
int
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
	/* The text is kept with the runtime for an upgrade's handover; a
	 * file that cannot be read gets its error from cfg_load_file(). */
	r->source = master_read_source(m->rt->cfg->path, &r->source_len);
	cfg = r->source != NULL ? cfg_load_string(r->source, r->source_len,
	    m->rt->cfg->path, &diag) : cfg_load_file(m->rt->cfg->path, &diag);
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
