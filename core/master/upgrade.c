/* SPDX-License-Identifier: MIT */
/*
 * upgrade: `smtpfrontctl upgrade [BINARY]` and SIGUSR2. The master
 * re-executes a binary in place (same pid, so its workers stay its
 * children and systemd's main pid does not change), keeping every socket
 * that matters and the shared memory; the new image takes the running
 * generation over as its own and then starts a new one, as a reload does.
 *
 * The state crosses the exec in a memory file (memfd) whose descriptor is
 * in $SMTPFRONT_HANDOVER: text lines, the first of which is always
 * "smtpfront-handover FORMAT" so that any image can tell whether it can
 * read the rest. Each other line is a record "KEY VALUE..."; the last one,
 * "config LEN", is followed by the LEN bytes of the running generation's
 * configuration file as it was read (the new image parses it again to
 * rebuild that generation's runtime: its slots, listeners and what a
 * respawned worker of it needs). The descriptors named in the records lose
 * FD_CLOEXEC only for the exec.
 *
 * What can go wrong, and what is left running then:
 *   - the exec fails (no such file, not executable, ...): the old image
 *     goes on as it was, and says so;
 *   - the new image cannot read the state (another FORMAT): it re-executes
 *     the previous image (a descriptor of its binary, opened before the
 *     exec, is in $SMTPFRONT_HANDOVER_PREV) with the state untouched, and
 *     that one takes its own state back and answers "refused";
 *   - the new image cannot start a generation (its config check fails, a
 *     bind fails, workers do not get ready): it keeps running, with the
 *     workers the previous image started as its current generation (it
 *     respawns them from their own config), and answers with the errors,
 *     as a failed reload does.
 */
#include <sys/mman.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/child.h"
#include "core/deny.h"
#include "core/log.h"
#include "core/master/control.h"
#include "core/master/denyctl.h"
#include "core/master/master.h"
#include "core/master/master_int.h"
#include "core/master/metrics_http.h"
#include "core/master/notify.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/runtime.h"
#include "core/shm.h"
#include "core/worker/clients.h"

/* Bump when a record changes meaning; adding a record that an older
 * reader may skip does not need it (unknown records are ignored). */
#define UPGRADE_FORMAT		1
#define UPGRADE_MAGIC		"smtpfront-handover"
#define UPGRADE_PREV_ENV	"SMTPFRONT_HANDOVER_PREV"
#define UPGRADE_REFUSED_ENV	"SMTPFRONT_HANDOVER_REFUSED"
/* Tests only: the format this binary claims to read. */
#define UPGRADE_TEST_FORMAT_ENV	"SMTPFRONT_TEST_HANDOVER_FORMAT"
#define UPGRADE_MAX_FDS		4096

extern char **environ;

/* ------------------------------------------------------------ old image */

struct upgrade_fds {
	int fd[UPGRADE_MAX_FDS];
	size_t n;
};

static void
upgrade_keep(struct upgrade_fds *k, int fd)
{
	if (fd >= 0 && k->n < UPGRADE_MAX_FDS)
		k->fd[k->n++] = fd;
}

/* The index of rt among the runtimes handed over (0 = current), or -1. */
static int
upgrade_rt_index(const struct master *m, const struct runtime *rt,
    struct runtime *const *held, size_t nheld)
{
	if (rt == m->rt)
		return 0;
	for (size_t i = 0; i < nheld; i++)
		if (held[i] == rt)
			return (int)i + 1;
	return -1;
}

/* The slots rt holds, on one line each for servers and listeners. */
static void
upgrade_write_holds(FILE *f, int idx, const struct runtime *rt)
{
	fprintf(f, "holder %d %u servers", idx, rt->generation);
	for (size_t i = 0; i < rt->nhold_servers; i++)
		fprintf(f, " %u", rt->hold_servers[i]);
	for (size_t i = 0; i < rt->npools; i++)
		for (size_t j = 0; j < rt->pools[i].cfg->nservers; j++)
			fprintf(f, " %u", rt->pools[i].server_slot[j]);
	fprintf(f, " listeners");
	for (size_t i = 0; i < rt->nhold_listeners; i++)
		fprintf(f, " %u", rt->hold_listeners[i]);
	for (size_t i = 0; i < rt->nlisteners; i++)
		fprintf(f, " %u", rt->listeners[i].slot);
	fprintf(f, "\n");
}

static void
upgrade_write_child(FILE *f, struct upgrade_fds *k, const struct child *c,
    int rt)
{
	fprintf(f, "child %s %u %ld %u %d %d %d %d %" PRId64 " %" PRId64 "\n",
	    c->kind == CHILD_WORKER ? "worker" : "health", c->slot,
	    (long)c->pid, c->generation, rt, c->chan, c->ready, c->draining,
	    c->deadline_us, c->started_us);
	upgrade_keep(k, c->chan);
}

/* Write the state to fd, and list the descriptors the next image needs. */
static int
upgrade_write(struct master *m, int fd, const char *binary,
    struct upgrade_fds *k)
{
	struct metrics_master_state ms;
	struct runtime **held = NULL;
	size_t nheld = 0;
	const struct runtime *rt = m->rt;
	struct child *c;
	uid_t uid;
	pid_t pid;
	FILE *f;
	int afd, d;

	if ((d = dup(fd)) == -1 || (f = fdopen(d, "w")) == NULL) {
		if (d != -1)
			close(d);
		return -1;
	}
	held = calloc(m->nrts + 1, sizeof(*held));
	if (held == NULL) {
		fclose(f);
		return -1;
	}
	for (size_t i = 0; i < m->nrts; i++)
		if (m->rts[i] != m->rt && m->rts[i]->nchildren > 0)
			held[nheld++] = m->rts[i];
	fprintf(f, "%s %d\n", UPGRADE_MAGIC, UPGRADE_FORMAT);
	fprintf(f, "version %s\n", SMTPFRONT_VERSION);
	fprintf(f, "exe %s\n", m->exe);
	fprintf(f, "binary %s\n", binary);
	fprintf(f, "started_us %" PRId64 "\n", control_started_us(m->ctl));
	metrics_master_save(&ms);
	fprintf(f, "metrics %.6f %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
	    " %d", ms.start_time, ms.reloads, ms.reload_failures,
	    ms.worker_restarts, ms.health_restarts, ms.last_reload_ok);
	for (int i = 0; i < METRICS_NUPGRADE; i++)
		fprintf(f, " %" PRIu64, ms.upgrades[i]);
	fprintf(f, "\n");
	fprintf(f, "sandbox_kills %" PRIu64 "\n", ms.sandbox_kills);
	fprintf(f, "generation %u\n", rt->generation);
	fprintf(f, "shm %d", shm_handover_fd());
	upgrade_keep(k, shm_handover_fd());
	for (int r = 0; r < SHM_SLOT_NREGIONS; r++)
		fprintf(f, " %zu", shm_fixed_bytes((enum shm_slot_region)r));
	fprintf(f, "\n");
	for (int r = 0; r < SHM_SLOT_NREGIONS; r++) {
		const uint64_t *w;
		size_t n = shm_retired((enum shm_slot_region)r, &w);

		if (n == 0)
			continue;
		fprintf(f, "retired %d %zu", r, n);
		for (size_t i = 0; i < n; i++)
			fprintf(f, " %" PRIu64, w[i]);
		fprintf(f, "\n");
	}
	fprintf(f, "kick %d\n", m->kick_fd);
	upgrade_keep(k, m->kick_fd);
	if (deny_fd() != -1) {
		fprintf(f, "deny %d\n", deny_fd());
		upgrade_keep(k, deny_fd());
	}
	fprintf(f, "control %d\n", control_fd(m->ctl));
	upgrade_keep(k, control_fd(m->ctl));
	fprintf(f, "metrics_fd %d\n", metrics_http_fd(m->metrics));
	upgrade_keep(k, metrics_http_fd(m->metrics));
	for (size_t i = 0; i < rt->nlisteners; i++)
		for (size_t j = 0; j < rt->listeners[i].nbinds; j++) {
			const struct rt_bind *b = &rt->listeners[i].binds[j];
			char name[128];

			if (b->fd == -1)
				continue;
			runtime_bind_name(b->addr, name, sizeof(name));
			fprintf(f, "listener %d %s\n", b->fd, name);
			upgrade_keep(k, b->fd);
		}
	for (size_t i = 0; i < m->slots.nservers; i++)
		fprintf(f, "sslot %zu %u %s\n", i, m->slots.servers[i].generation,
		    m->slots.servers[i].key);
	for (size_t i = 0; i < m->slots.nlisteners; i++)
		fprintf(f, "lslot %zu %u %s\n", i,
		    m->slots.listeners[i].generation,
		    m->slots.listeners[i].key);
	for (size_t i = 0; i < nheld; i++)
		upgrade_write_holds(f, (int)i + 1, held[i]);
	MASTER_FOREACH_CHILD(m, c) {
		int idx;

		if (c->pid == 0 || c->rt == NULL ||
		    (idx = upgrade_rt_index(m, c->rt, held, nheld)) == -1)
			continue;
		upgrade_write_child(f, k, c, idx);
	}
	if ((afd = control_waiting_fd(m->ctl, &uid, &pid)) != -1) {
		fprintf(f, "answer %d %ld %ld\n", afd, (long)uid, (long)pid);
		upgrade_keep(k, afd);
	}
	fprintf(f, "config %zu\n", rt->source_len);
	if (rt->source_len > 0)
		fwrite(rt->source, 1, rt->source_len, f);
	free(held);
	if (fclose(f) != 0)
		return -1;
	return lseek(fd, 0, SEEK_SET) == 0 ? 0 : -1;
}

static void
upgrade_cloexec(const struct upgrade_fds *k, bool on)
{
	for (size_t i = 0; i < k->n; i++)
		(void)fcntl(k->fd[i], F_SETFD, on ? FD_CLOEXEC : 0);
}

int
master_upgrade_begin(struct master *m, const char *who, const char *binary,
    char *err, size_t cap)
{
	static struct upgrade_fds keep;
	const char *path = binary != NULL ? binary : m->exe;
	char num[32];
	int fd, prev, e;

	if (m->stopping) {
		snprintf(err, cap, "smtpfront is stopping");
		return -1;
	}
	if (!m->started) {
		snprintf(err, cap, "smtpfront is still starting; try again "
		    "when it is ready");
		return -1;
	}
	if (m->reload.phase != RELOAD_IDLE) {
		snprintf(err, cap, "a reload is in progress (generation %u is "
		    "starting); try again when it is over",
		    m->reload.generation);
		return -1;
	}
	if (path[0] != '/') {
		snprintf(err, cap, "upgrade: the binary must be an absolute "
		    "path, not \"%s\"", path);
		return -1;
	}
	if (m->rt->source == NULL) {
		snprintf(err, cap, "upgrade: the configuration of generation "
		    "%u could not be kept for the handover (was %s readable "
		    "at its start?); reload first", m->rt->generation,
		    m->rt->cfg->path);
		return -1;
	}
	log_info("upgrade to %s requested by %s", path, who);
	if (access(path, X_OK) == -1) {
		snprintf(err, cap, "upgrade: cannot execute %s: %s; smtpfront "
		    "%s goes on", path, strerror(errno), SMTPFRONT_VERSION);
		log_warnx("%s", err);
		metrics_note_upgrade(METRICS_UPGRADE_EXEC_FAILED);
		return -1;
	}
	fd = memfd_create("smtpfront-handover", 0);
	prev = open("/proc/self/exe", O_RDONLY);
	keep.n = 0;
	if (fd == -1 || upgrade_write(m, fd, path, &keep) == -1) {
		e = errno;
		if (fd != -1)
			close(fd);
		if (prev != -1)
			close(prev);
		snprintf(err, cap, "upgrade: cannot write the state for the "
		    "next image: %s; smtpfront %s goes on", strerror(e),
		    SMTPFRONT_VERSION);
		log_warnx("%s", err);
		return -1;
	}
	if (notify_send("RELOADING=1\nSTATUS=upgrading") == -1)
		log_warn("sd_notify RELOADING=1");
	upgrade_cloexec(&keep, false);
	snprintf(num, sizeof(num), "%d", fd);
	setenv(MASTER_HANDOVER_ENV, num, 1);
	if (prev != -1) {
		snprintf(num, sizeof(num), "%d", prev);
		setenv(UPGRADE_PREV_ENV, num, 1);
	}
	log_info("upgrade: executing %s (pid %ld stays)", path,
	    (long)getpid());
	execve(path, m->argv, environ);
	e = errno;
	unsetenv(MASTER_HANDOVER_ENV);
	unsetenv(UPGRADE_PREV_ENV);
	upgrade_cloexec(&keep, true);
	close(fd);
	if (prev != -1)
		close(prev);
	metrics_note_upgrade(METRICS_UPGRADE_EXEC_FAILED);
	snprintf(err, cap, "upgrade: cannot execute %s: %s; smtpfront %s "
	    "goes on", path, strerror(e), SMTPFRONT_VERSION);
	log_warnx("%s", err);
	if (notify_send("READY=1\nSTATUS=ready (upgrade failed)") == -1)
		log_warn("sd_notify READY=1");
	return -1;
}

/* ------------------------------------------------------------ new image */

struct handover_child {
	enum child_kind kind;
	unsigned slot, generation;
	long pid;
	int rt, chan, ready, draining;
	int64_t deadline_us, started_us;
};

struct handover_holder {
	unsigned generation;
	unsigned *servers, *listeners;
	size_t nservers, nlisteners;
};

struct handover {
	int format;
	char version[64];
	char exe[4096];
	char binary[4096];
	int64_t started_us;
	struct metrics_master_state ms;
	unsigned generation;
	int shm_fd;
	int deny_fd;			/* -1: none handed over */
	size_t fixed[SHM_SLOT_NREGIONS];
	int kick_fd, control_fd, metrics_fd;
	int answer_fd;
	long answer_uid, answer_pid;
	struct handover_child *children;
	size_t nchildren;
	struct handover_holder *holders;	/* [0] unused: 0 = current */
	size_t nholders;
	char *config;
	size_t config_len;
	int keep[UPGRADE_MAX_FDS];	/* every descriptor named above */
	size_t nkeep;
};

static void
handover_keep(struct handover *h, int fd)
{
	if (fd >= 0 && h->nkeep < UPGRADE_MAX_FDS)
		h->keep[h->nkeep++] = fd;
}

/* Parse the whole state; -1 with a reason in err. */
static int
upgrade_parse(struct master *m, struct handover *h, FILE *f, char *err,
    size_t cap)
{
	char *line = NULL, *p;
	size_t lcap = 0;
	ssize_t n;
	int rc = -1;

	while ((n = getline(&line, &lcap, f)) > 0) {
		char key[32];
		int off = 0;

		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (sscanf(line, "%31s %n", key, &off) != 1)
			continue;
		p = line + off;
		if (strcmp(key, "version") == 0)
			snprintf(h->version, sizeof(h->version), "%s", p);
		else if (strcmp(key, "exe") == 0)
			snprintf(h->exe, sizeof(h->exe), "%s", p);
		else if (strcmp(key, "binary") == 0)
			snprintf(h->binary, sizeof(h->binary), "%s", p);
		else if (strcmp(key, "started_us") == 0)
			h->started_us = strtoll(p, NULL, 10);
		else if (strcmp(key, "metrics") == 0) {
			int ok = 0, used = 0;

			if (sscanf(p, "%lf %" SCNu64 " %" SCNu64 " %" SCNu64
			    " %" SCNu64 " %d%n", &h->ms.start_time,
			    &h->ms.reloads, &h->ms.reload_failures,
			    &h->ms.worker_restarts, &h->ms.health_restarts,
			    &ok, &used) == 6) {
				h->ms.last_reload_ok = ok != 0;
				p += used;
				for (int i = 0; i < METRICS_NUPGRADE; i++)
					h->ms.upgrades[i] = strtoull(p, &p, 10);
			}
		} else if (strcmp(key, "sandbox_kills") == 0)
			h->ms.sandbox_kills = strtoull(p, NULL, 10);
		else if (strcmp(key, "generation") == 0)
			h->generation = (unsigned)strtoul(p, NULL, 10);
		else if (strcmp(key, "shm") == 0) {
			h->shm_fd = (int)strtol(p, &p, 10);
			for (int i = 0; i < SHM_SLOT_NREGIONS; i++)
				h->fixed[i] = strtoull(p, &p, 10);
		} else if (strcmp(key, "retired") == 0) {
			int r = (int)strtol(p, &p, 10);
			size_t nw = strtoull(p, &p, 10);
			uint64_t *w;

			if (r < 0 || r >= SHM_SLOT_NREGIONS || nw > (1u << 28))
				continue;
			if ((w = calloc(nw + 1, sizeof(*w))) == NULL)
				goto out;
			for (size_t i = 0; i < nw; i++)
				w[i] = strtoull(p, &p, 10);
			if (shm_retired_restore((enum shm_slot_region)r, w,
			    nw) == -1) {
				free(w);
				goto out;
			}
			free(w);
		} else if (strcmp(key, "kick") == 0)
			h->kick_fd = (int)strtol(p, NULL, 10);
		else if (strcmp(key, "deny") == 0)
			h->deny_fd = (int)strtol(p, NULL, 10);
		else if (strcmp(key, "control") == 0)
			h->control_fd = (int)strtol(p, NULL, 10);
		else if (strcmp(key, "metrics_fd") == 0)
			h->metrics_fd = (int)strtol(p, NULL, 10);
		else if (strcmp(key, "listener") == 0) {
			int fd = (int)strtol(p, &p, 10);

			handover_keep(h, fd);
			(void)runtime_inherit(fd, *p == ' ' ? p + 1 : p);
		} else if (strcmp(key, "sslot") == 0 ||
		    strcmp(key, "lslot") == 0) {
			size_t i = strtoull(p, &p, 10);
			unsigned g = (unsigned)strtoul(p, &p, 10);

			if (*p == ' ')
				p++;
			if (i > SHM_MAX_SERVER_SLOTS ||
			    runtime_slot_restore(&m->slots, key[0] == 's', i,
			    p, g) == -1)
				goto out;
		} else if (strcmp(key, "holder") == 0) {
			struct handover_holder *hh, *nh;
			size_t idx = strtoull(p, &p, 10);
			unsigned **v = NULL;
			size_t *nv = NULL;
			char *tok, *save = NULL;

			if (idx != h->nholders + 1 || (nh = realloc(h->holders,
			    (idx + 1) * sizeof(*nh))) == NULL)
				goto out;
			h->holders = nh;
			h->nholders = idx;
			hh = &h->holders[idx];
			memset(hh, 0, sizeof(*hh));
			hh->generation = (unsigned)strtoul(p, &p, 10);
			for (tok = strtok_r(p, " ", &save); tok != NULL;
			    tok = strtok_r(NULL, " ", &save)) {
				unsigned *nn;

				if (strcmp(tok, "servers") == 0) {
					v = &hh->servers;
					nv = &hh->nservers;
					continue;
				}
				if (strcmp(tok, "listeners") == 0) {
					v = &hh->listeners;
					nv = &hh->nlisteners;
					continue;
				}
				if (v == NULL || (nn = realloc(*v, (*nv + 1) *
				    sizeof(*nn))) == NULL)
					goto out;
				*v = nn;
				nn[(*nv)++] = (unsigned)strtoul(tok, NULL, 10);
			}
		} else if (strcmp(key, "child") == 0) {
			struct handover_child hc, *nc;
			char kind[16];
			long long dl, st;

			memset(&hc, 0, sizeof(hc));
			if (sscanf(p, "%15s %u %ld %u %d %d %d %d %lld %lld",
			    kind, &hc.slot, &hc.pid, &hc.generation, &hc.rt,
			    &hc.chan, &hc.ready, &hc.draining, &dl, &st) != 10)
				continue;
			hc.kind = strcmp(kind, "health") == 0 ? CHILD_HEALTH :
			    CHILD_WORKER;
			hc.deadline_us = dl;
			hc.started_us = st;
			if ((nc = realloc(h->children, (h->nchildren + 1) *
			    sizeof(*nc))) == NULL)
				goto out;
			h->children = nc;
			h->children[h->nchildren++] = hc;
		} else if (strcmp(key, "answer") == 0)
			(void)sscanf(p, "%d %ld %ld", &h->answer_fd,
			    &h->answer_uid, &h->answer_pid);
		else if (strcmp(key, "config") == 0) {
			h->config_len = strtoull(p, NULL, 10);
			if (h->config_len > ((size_t)64 << 20) ||
			    (h->config = malloc(h->config_len + 1)) == NULL)
				goto out;
			if (fread(h->config, 1, h->config_len, f) !=
			    h->config_len) {
				snprintf(err, cap, "the state ends inside the "
				    "configuration");
				goto out;
			}
			h->config[h->config_len] = '\0';
			rc = 0;
			break;
		}
	}
	if (rc == -1 && err[0] == '\0')
		snprintf(err, cap, "the state has no configuration record");
out:
	free(line);
	if (rc == -1 && err[0] == '\0')
		snprintf(err, cap, "out of memory reading the state");
	return rc;
}

/* The format this binary reads (a test may pretend another). */
static int
upgrade_format_read(void)
{
	const char *t = getenv(UPGRADE_TEST_FORMAT_ENV);

	return t != NULL && t[0] != '\0' ? atoi(t) : UPGRADE_FORMAT;
}

/*
 * This image cannot read the state: hand it back to the previous image,
 * untouched, through the descriptor of its binary; it answers "refused".
 * Returns only when that is impossible.
 */
static void
upgrade_refuse(struct master *m, int state, const char *why)
{
	const char *prev = getenv(UPGRADE_PREV_ENV);
	int fd = prev != NULL ? atoi(prev) : -1;
	char num[32];

	log_errx("upgrade: %s", why);
	if (fd < 0) {
		log_errx("upgrade: no previous image to hand the state back "
		    "to; exiting");
		return;
	}
	/* As it was written: from its start (stdio read ahead). */
	snprintf(num, sizeof(num), "%d", state);
	if (lseek(state, 0, SEEK_SET) != 0) {
		log_err("upgrade: cannot rewind the state");
		return;
	}
	setenv(MASTER_HANDOVER_ENV, num, 1);
	setenv(UPGRADE_REFUSED_ENV, why, 1);
	unsetenv(UPGRADE_TEST_FORMAT_ENV);
	unsetenv(UPGRADE_PREV_ENV);
	log_errx("upgrade: handing the state back to the previous image");
	execveat(fd, "", m->argv, environ, AT_EMPTY_PATH);
	log_err("upgrade: cannot execute the previous image");
}

static struct child *
upgrade_adopt_child(struct master *m, const struct handover_child *hc,
    struct runtime *rt)
{
	struct child *c;

	if (hc->kind == CHILD_HEALTH)
		c = &m->health;
	else {
		if (hc->slot >= SHM_MAX_WORKER_SLOTS)
			return NULL;
		if (hc->slot >= m->nworkers) {
			size_t nn = (hc->slot / 16 + 1) * 16;
			struct child **w = realloc(m->workers, nn * sizeof(*w));

			if (w == NULL)
				return NULL;
			memset(w + m->nworkers, 0, (nn - m->nworkers) *
			    sizeof(*w));
			m->workers = w;
			m->nworkers = nn;
		}
		if (m->workers[hc->slot] != NULL ||
		    (c = calloc(1, sizeof(*c))) == NULL)
			return NULL;
		m->workers[hc->slot] = c;
	}
	c->kind = hc->kind;
	c->slot = hc->slot;
	c->pid = (pid_t)hc->pid;
	c->rt = rt;
	c->generation = hc->generation;
	c->chan = hc->chan;
	c->ready = hc->ready != 0;
	c->draining = hc->draining != 0;
	c->deadline_us = hc->deadline_us;
	c->started_us = hc->started_us;
	/* Children inherit the filter setting of the config they run. */
	c->sandboxed = rt->cfg != NULL && rt->cfg->sandbox &&
	    sandbox_unavailable() == NULL;
	rt->nchildren++;
	(void)fcntl(c->chan, F_SETFD, FD_CLOEXEC);
	if (evutil_make_socket_nonblocking(c->chan) == -1 ||
	    (c->chan_ev = event_new(m->base, c->chan, EV_READ | EV_PERSIST,
	    master_on_channel, c)) == NULL ||
	    event_add(c->chan_ev, NULL) == -1)
		log_warnx("cannot watch the channel of %s %u",
		    child_kind_names[c->kind], c->slot);
	return c;
}

int
master_run_upgraded(const char *path)
{
	struct master *m = &master;
	static struct handover h;
	static char err[RELOAD_ERR_MAX];
	struct cfg_diag diag = { 0 };
	const char *refused = getenv(UPGRADE_REFUSED_ENV);
	struct config *old, *cfg = NULL;
	char **argv = m->argv, line[256], why[600];
	const char *env = getenv(MASTER_HANDOVER_ENV);
	unsigned adopted = 0;
	int fd = env != NULL ? atoi(env) : -1, fmt = 0;
	FILE *f;

	master_init(m);
	m->argv = argv;
	memset(&h, 0, sizeof(h));
	h.shm_fd = h.kick_fd = h.control_fd = h.metrics_fd = -1;
	h.deny_fd = -1;
	h.answer_fd = -1;
	unsetenv(MASTER_HANDOVER_ENV);
	if (fd < 0 || (f = fdopen(fd, "r")) == NULL)
		fatalx("upgrade: %s=\"%s\" is not a descriptor of the state "
		    "handed over", MASTER_HANDOVER_ENV, env != NULL ? env : "");
	if (fgets(line, sizeof(line), f) == NULL ||
	    sscanf(line, UPGRADE_MAGIC " %d", &fmt) != 1)
		fatalx("upgrade: descriptor %d does not hold the state of an "
		    "smtpfront master (no \"%s\" line); refusing it", fd,
		    UPGRADE_MAGIC);
	if (fmt != upgrade_format_read()) {
		snprintf(why, sizeof(why), "smtpfront %s cannot read the state "
		    "handed over: it is in format %d, this binary reads format "
		    "%d", SMTPFRONT_VERSION, fmt, upgrade_format_read());
		upgrade_refuse(m, fd, why);
		fatalx("upgrade refused: %s", why);
	}
	err[0] = '\0';
	if (upgrade_parse(m, &h, f, err, sizeof(err)) == -1)
		fatalx("upgrade: the state handed over is not readable: %s",
		    err);
	/* Memory of another layout (a binary whose shm records differ):
	 * refused as another format is, while it can still go back. */
	if (shm_check_layout(h.shm_fd, err, sizeof(err)) == -1) {
		snprintf(why, sizeof(why), "smtpfront %s cannot read the state "
		    "handed over: %.400s", SMTPFRONT_VERSION, err);
		upgrade_refuse(m, fd, why);
		fatalx("upgrade refused: %s", why);
	}
	fclose(f);
	/* Whatever else the previous image left open without FD_CLOEXEC
	 * (a scraper's connection, say) is nobody's here. */
	handover_keep(&h, h.shm_fd);
	handover_keep(&h, h.kick_fd);
	handover_keep(&h, h.deny_fd);
	handover_keep(&h, h.control_fd);
	handover_keep(&h, h.metrics_fd);
	handover_keep(&h, h.answer_fd);
	for (size_t i = 0; i < h.nchildren; i++)
		handover_keep(&h, h.children[i].chan);
	child_close_fds(h.keep, h.nkeep);
	unsetenv(UPGRADE_PREV_ENV);
	unsetenv(UPGRADE_REFUSED_ENV);
	snprintf(m->exe, sizeof(m->exe), "%s", h.exe);
	snprintf(m->binary, sizeof(m->binary), "%s", h.binary);
	if (refused != NULL) {
		/* Back in the image that wrote the state: its binary. */
		ssize_t n = readlink("/proc/self/exe", m->binary,
		    sizeof(m->binary) - 1);

		m->binary[n > 0 ? n : 0] = '\0';
	}
	metrics_master_restore(&h.ms);

	/* The running generation, rebuilt from the text it was built from:
	 * the same slots (looked up by key in the table handed over), the
	 * same listening sockets. */
	old = cfg_load_string(h.config, h.config_len, path, &diag);
	if (old == NULL) {
		cfg_diag_print(&diag, stderr);
		fatalx("upgrade: smtpfront %s cannot read the configuration "
		    "of the running generation %u", SMTPFRONT_VERSION,
		    h.generation);
	}
	cfg_diag_free(&diag);
	log_setup(old);
	master_setup_signals(m);
	if (shm_adopt(h.shm_fd, h.fixed, err, sizeof(err)) == -1)
		fatalx("upgrade: %s", err);
	metrics_master_attach();
	/* The runtime deny entries live on in their table; the counts of
	 * workers that exited before the upgrade start again (a rate
	 * window is a minute). */
	if (h.deny_fd == -1 || deny_adopt(h.deny_fd) == -1) {
		log_warnx("upgrade: no deny table handed over: starting an "
		    "empty one (state_directory, if set, refills it)");
		deny_create();
	}
	clients_rate_retired_create();
	m->kick_fd = h.kick_fd;
	(void)fcntl(m->kick_fd, F_SETFD, FD_CLOEXEC);
	err[0] = '\0';
	m->rt = runtime_new(old, h.generation, NULL, &m->slots, err,
	    sizeof(err));
	runtime_inherit_done(master_fdstore_forget);
	if (m->rt == NULL) {
		master_log_lines("upgrade: ", err);
		fatalx("upgrade: cannot take over generation %u",
		    h.generation);
	}
	m->rt->source = h.config;
	m->rt->source_len = h.config_len;
	h.config = NULL;
	master_rt_add(m, m->rt);
	runtime_hold_adopted(m->rt, &m->slots);
	runtime_commit(m->rt, NULL, &m->slots, NULL);

	master_setup_events(m);
	denyctl_start(m->base, old);
	master_setup_control(m, h.control_fd);
	control_set_started_us(m->ctl, h.started_us);
	if (h.metrics_fd != -1)
		metrics_http_inherit(m->metrics, h.metrics_fd);
	if (metrics_http_prepare(m->metrics, old->metrics.enabled ?
	    &old->metrics.bind : NULL, err, sizeof(err)) == -1)
		log_warnx("upgrade: %s", err);
	metrics_http_commit(m->metrics);

	{
		struct runtime **rts = calloc(h.nholders + 1, sizeof(*rts));

		if (rts == NULL)
			fatalx("upgrade: out of memory");
		rts[0] = m->rt;
		for (size_t i = 1; i <= h.nholders; i++) {
			struct handover_holder *hh = &h.holders[i];

			rts[i] = runtime_new_holder(hh->generation, hh->servers,
			    hh->nservers, hh->listeners, hh->nlisteners);
			if (rts[i] == NULL)
				fatalx("upgrade: out of memory");
			master_rt_add(m, rts[i]);
			runtime_hold_adopted(rts[i], &m->slots);
			free(hh->servers);
			free(hh->listeners);
		}
		for (size_t i = 0; i < h.nchildren; i++) {
			const struct handover_child *hc = &h.children[i];

			if (hc->rt < 0 || (size_t)hc->rt > h.nholders ||
			    upgrade_adopt_child(m, hc, rts[hc->rt]) == NULL) {
				log_warnx("upgrade: cannot take over %s pid %ld",
				    hc->kind == CHILD_HEALTH ? "the health "
				    "process" : "a worker", hc->pid);
				continue;
			}
			adopted++;
		}
		free(rts);
		free(h.holders);
		free(h.children);
	}
	m->started = true;
	if (h.answer_fd != -1)
		control_adopt_waiting(m->ctl, h.answer_fd, (uid_t)h.answer_uid,
		    (pid_t)h.answer_pid);
	log_info("upgrade: smtpfront %s (%s, pid %ld) took over from %s: "
	    "generation %u, %u process(es)", SMTPFRONT_VERSION, m->binary,
	    (long)getpid(), h.version, h.generation, adopted);

	/* Now the new generation, as a reload. */
	m->reload.errors[0] = m->reload.warnings[0] = '\0';
	m->reload.upgrade = true;
	m->reload.generation = m->rt->generation + 1;
	m->reload.started_us = net_now_us();
	m->reload.phase = RELOAD_RESOLVING;
	if (refused != NULL) {
		master_reload_error(m, "%s", refused);
		metrics_note_upgrade(METRICS_UPGRADE_REFUSED);
		m->reload.upgrade = false;	/* counted once, as refused */
		m->reload.phase = RELOAD_IDLE;
		control_upgrade_done(m->ctl, 0, m->binary, m->reload.errors,
		    m->reload.warnings);
		if (notify_send("READY=1\nSTATUS=ready (upgrade refused)") == -1)
			log_warn("sd_notify READY=1");
	} else {
		m->reload.source = master_read_source(path,
		    &m->reload.source_len);
		cfg = m->reload.source != NULL ? cfg_load_string(
		    m->reload.source, m->reload.source_len, path, &diag) :
		    cfg_load_file(path, &diag);
		if (cfg != NULL && cfg_check_accounts(cfg, &diag) == -1) {
			cfg_free(cfg);
			cfg = NULL;
		}
		if (diag.file == NULL)
			diag.file = strdup(path);
		master_reload_diag(m, &diag);
		cfg_diag_free(&diag);
		if (cfg == NULL)
			master_reload_fail(m);
		else {
			master_keep_fixed(m, m->rt->cfg, cfg);
			master_reload_start_workers(m, cfg);
		}
	}
	/* Later loads are reloads: host names go to the resolver child. */
	cfg_set_resolve_mode(CFG_RESOLVE_DEFER);
	/* Children that ended while nobody was looking. */
	master_reap(m);
	return master_loop(m);
}
