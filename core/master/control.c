/* SPDX-License-Identifier: MIT */
/*
 * control: the master's control socket. One request line (at most
 * CONTROL_LINE_MAX bytes) per connection, one JSON answer, then close.
 * Commands come from a {verb, handler} table. The admin state set here is
 * kept in the master's own table (by pool, server name and address) so a
 * new runtime can be given the same states, and mirrored to shared memory
 * where the workers read it.
 *
 * Connections are bounded in all and per peer uid (SO_PEERCRED). Over a
 * bound, the oldest connection that has not sent its request yet is closed
 * to make room, so idle or reconnecting clients cannot lock `smtpfrontctl
 * status` out; a client that did send its request is never pushed out.
 * Out of descriptors, accepting pauses on a timer instead of spinning on a
 * socket that stays readable. The warnings about either are rate-limited.
 *
 * Two levels (issue 20): whoever reaches the socket (its mode and
 * control.group) may read: status, metrics, deny list. Changing state
 * (enable, disable, drain, reload, upgrade, deny add/del) needs the admin
 * level: root, the master's own uid, or a member of control.admin_group.
 * Membership is the peer process's own groups (SO_PEERGROUPS and the gid
 * of SO_PEERCRED, as the kernel saw them at connect, no lookup), or where
 * the kernel lacks SO_PEERGROUPS, getgrouplist() of the uid's account.
 * It is decided once per connection, and only for a command that needs it.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/deny.h"
#include "core/json.h"
#include "core/log.h"
#include "core/master/control.h"
#include "core/master/denyctl.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/shm.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS	59	/* Linux 4.13 */
#endif

#define CONTROL_LINE_MAX	4096
#define CONTROL_TIMEOUT_S	5
/* Connections served at once, and per peer uid: the master's descriptors
 * are not for a local client to exhaust, nor one user's to take from the
 * others. */
#define CONTROL_MAX_CONNS	64
#define CONTROL_MAX_PER_UID	16
#define CONTROL_ACCEPT_BATCH	16
#define CONTROL_MAX_ARGS	8
#define CONTROL_EMFILE_PAUSE_MS	100
#define CONTROL_WARN_EVERY_S	10

enum control_conn_state {
	CONTROL_READING,		/* request not complete yet: may be evicted */
	CONTROL_WAITING,		/* a reload, answered when it is over */
	CONTROL_ANSWERING,		/* answer queued; closes once written */
};

struct control_conn {
	struct control *c;
	struct bufferevent *bev;
	struct event *deadline;		/* the whole exchange, from accept */
	TAILQ_ENTRY(control_conn) entry;	/* oldest first */
	enum control_conn_state state;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	int admin;			/* -1 not decided yet, 0 read, 1 admin */
};

struct control_admin {
	char pool[CFG_NAME_MAX + 1];
	char server[CFG_NAME_MAX + 1];
	char address[sizeof(((struct cfg_addr *)0)->text)];
	enum shm_admin state;
};

struct control {
	struct event_base *base;
	const struct runtime *rt;
	control_workers_fn workers;
	control_reload_fn reload;
	control_upgrade_fn upgrade;
	void *workers_arg;
	int fd;
	struct event *listen_ev;
	struct event *resume_timer;	/* accepting paused (out of fds) */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int64_t started_us;
	TAILQ_HEAD(, control_conn) conns;
	size_t nconns;
	struct control_admin *admin;	/* servers not READY */
	size_t nadmin;
	/* Crowding, reported at most every CONTROL_WARN_EVERY_S. */
	struct event *warn_timer;
	int64_t warned_us;
	unsigned evicted, refused, paused;
};

typedef void (*control_handler)(struct control_conn *cc, struct evbuffer *out,
    int argc, char **argv);

struct control_command {
	const char *verb;
	int nargs;			/* -1 = checked by the handler */
	const char *usage;
	control_handler handler;
	bool admin;			/* changes state: the admin level */
};

static void
control_answer_error(struct evbuffer *out, const char *msg)
{
	evbuffer_add_printf(out, "{\"ok\":false,\"error\":");
	(void)!json_write_string(out, msg);
	evbuffer_add_printf(out, "}\n");
}

/* ------------------------------------------------------------ admin */

static struct control_admin *
control_admin_find(struct control *c, const char *pool, const char *server,
    const char *address)
{
	for (size_t i = 0; i < c->nadmin; i++) {
		struct control_admin *a = &c->admin[i];

		if (strcmp(a->pool, pool) == 0 &&
		    strcmp(a->server, server) == 0 &&
		    strcmp(a->address, address) == 0)
			return a;
	}
	return NULL;
}

static int
control_admin_store(struct control *c, const char *pool,
    const struct cfg_server *s, enum shm_admin state)
{
	struct control_admin *a, *n;

	a = control_admin_find(c, pool, s->name, s->address.text);
	if (a == NULL && state == SHM_ADMIN_READY)
		return 0;
	if (a == NULL) {
		n = realloc(c->admin, (c->nadmin + 1) * sizeof(*n));
		if (n == NULL)
			return -1;
		c->admin = n;
		a = &c->admin[c->nadmin++];
		snprintf(a->pool, sizeof(a->pool), "%s", pool);
		snprintf(a->server, sizeof(a->server), "%s", s->name);
		snprintf(a->address, sizeof(a->address), "%s",
		    s->address.text);
	}
	if (state == SHM_ADMIN_READY) {
		*a = c->admin[--c->nadmin];
		return 0;
	}
	a->state = state;
	return 0;
}

void
control_apply_admin(struct control *c, const struct runtime *rt)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < rt->npools; i++) {
		const struct cfg_pool *p = rt->pools[i].cfg;

		for (size_t j = 0; j < p->nservers; j++) {
			const struct cfg_server *s = &p->servers[j];
			struct control_admin *a = control_admin_find(c,
			    p->name, s->name, s->address.text);

			shm_admin_set(rt->pools[i].server_slot[j], a != NULL ?
			    a->state : SHM_ADMIN_READY);
		}
	}
}

void
control_set_runtime(struct control *c, const struct runtime *rt)
{
	struct control_admin *keep;
	size_t nkeep = 0;

	if (c == NULL)
		return;
	c->rt = rt;
	control_apply_admin(c, rt);
	/* Forget the states of servers the new runtime does not have. */
	keep = calloc(c->nadmin + 1, sizeof(*keep));
	if (keep == NULL)
		return;		/* out of memory: keep the old table */
	for (size_t i = 0; i < rt->npools; i++) {
		const struct cfg_pool *p = rt->pools[i].cfg;

		for (size_t j = 0; j < p->nservers; j++) {
			const struct cfg_server *s = &p->servers[j];
			struct control_admin *a = control_admin_find(c,
			    p->name, s->name, s->address.text);

			if (a != NULL)
				keep[nkeep++] = *a;
		}
	}
	free(c->admin);
	c->admin = keep;
	c->nadmin = nkeep;
}

/* ------------------------------------------------------------ commands */

static void
control_json_worker(struct evbuffer *out, const struct control_worker *w)
{
	evbuffer_add_printf(out, "{\"pid\":%ld,\"generation\":%u,"
	    "\"draining\":%s,\"active\":%u}", (long)w->pid, w->generation,
	    w->draining ? "true" : "false", shm_slot_active(w->slot));
}

static uint64_t
control_check_failures(unsigned slot)
{
	const uint64_t *w = shm_server_checks(slot);
	uint64_t n = 0;

	for (unsigned r = 0; w != NULL && r < METRICS_NREASONS; r++)
		n += __atomic_load_n(&w[METRICS_CW_FAILURES + r],
		    __ATOMIC_RELAXED);
	return n;
}

static void
control_json_server(struct evbuffer *out, const struct cfg_server *s,
    unsigned slot, int64_t now)
{
	struct shm_health_snapshot h;
	enum shm_admin admin = shm_admin_get(slot);
	const char *state;

	shm_health_read(slot, &h);
	if (h.state > SHM_HEALTH_DOWN)
		h.state = SHM_HEALTH_UNKNOWN;
	if (admin > SHM_ADMIN_MAINT)
		admin = SHM_ADMIN_READY;
	state = admin != SHM_ADMIN_READY ? shm_admin_names[admin] :
	    shm_health_names[h.state];
	evbuffer_add_printf(out, "{\"name\":");
	(void)!json_write_string(out, s->name);
	evbuffer_add_printf(out, ",\"address\":");
	(void)!json_write_string(out, s->address.text);
	evbuffer_add_printf(out, ",\"state\":\"%s\",\"health\":\"%s\","
	    "\"admin\":\"%s\",\"weight\":%u,\"backup\":%s,\"reason\":",
	    state, shm_health_names[h.state], shm_admin_names[admin],
	    s->weight, s->backup ? "true" : "false");
	(void)!json_write_string(out, h.reason);
	if (h.last_check_us == 0)
		evbuffer_add_printf(out, ",\"check_ms\":null,"
		    "\"last_check_s\":null");
	else
		evbuffer_add_printf(out, ",\"check_ms\":%.1f,"
		    "\"last_check_s\":%.1f", h.check_ms,
		    (double)(now - h.last_check_us) / 1e6);
	/* issue 20: the last health change, time down and failed checks
	 * (the check counters of the metrics, by every reason) */
	if (h.changed_us == 0)
		evbuffer_add_printf(out, ",\"last_change_s\":null");
	else
		evbuffer_add_printf(out, ",\"last_change_s\":%.1f",
		    (double)(now - h.changed_us) / 1e6);
	evbuffer_add_printf(out, ",\"downtime_s\":%.1f,\"check_failures\":"
	    "%llu", (double)h.down_us / 1e6,
	    (unsigned long long)control_check_failures(slot));
	evbuffer_add_printf(out, ",\"active\":%u,\"total\":%llu,"
	    "\"failures\":%llu}", shm_server_active(slot),
	    (unsigned long long)shm_server_total(slot),
	    (unsigned long long)shm_server_failures(slot));
}

static void
control_json_cidrs(struct evbuffer *out, const struct cfg_cidr *c, size_t n)
{
	char net[64];

	evbuffer_add(out, "[", 1);
	for (size_t i = 0; i < n; i++) {
		deny_cidr_fmt(&c[i], net, sizeof(net));
		if (i > 0)
			evbuffer_add(out, ",", 1);
		(void)!json_write_string(out, net);
	}
	evbuffer_add(out, "]", 1);
}

/* A listener's admission settings: what is limited, and who is exempt or
 * refused outright. */
static void
control_json_limits(struct evbuffer *out, const struct cfg_listener *lc)
{
	evbuffer_add_printf(out, "\"max_connections_per_client\":%u,"
	    "\"max_connection_rate_per_client\":%u,"
	    "\"client_limit_exceptions\":", lc->max_connections_per_client,
	    lc->max_connection_rate_per_client);
	control_json_cidrs(out, lc->client_limit_exceptions,
	    lc->nclient_limit_exceptions);
	evbuffer_add_printf(out, ",\"deny\":");
	control_json_cidrs(out, lc->deny, lc->ndeny);
}

/* A listener: its sessions against max_connections, and how the sessions
 * since start ended ("why are clients getting 421?"). */
static void
control_json_listener(struct evbuffer *out, const struct rt_listener *l)
{
	uint64_t results[METRICS_NRESULTS];

	metrics_listener_results(l->slot, results);
	evbuffer_add_printf(out, "{\"name\":");
	(void)!json_write_string(out, l->cfg->name);
	evbuffer_add_printf(out, ",\"active\":%u,\"max_connections\":%u,",
	    shm_listener_active(l->slot), l->cfg->max_connections);
	control_json_limits(out, l->cfg);
	evbuffer_add_printf(out, ",\"sessions\":{");
	for (int r = 0; r < METRICS_NRESULTS; r++)
		evbuffer_add_printf(out, "%s\"%s\":%llu", r > 0 ? "," : "",
		    metrics_result_names[r], (unsigned long long)results[r]);
	evbuffer_add_printf(out, "}}");
}

/* Ask for the running workers, with room for all; NULL when out of
 * memory. */
static struct control_worker *
control_workers(struct control *c, size_t *n)
{
	struct control_worker *w;
	size_t cap = 64;

	for (;;) {
		w = calloc(cap, sizeof(*w));
		if (w == NULL)
			return NULL;
		*n = c->workers(c->workers_arg, w, cap);
		if (*n < cap)
			return w;
		free(w);
		cap *= 4;
	}
}

void
control_metrics(struct control *c, struct evbuffer *out)
{
	struct metrics_view v;
	struct control_worker *w;
	size_t nw = 0;

	memset(&v, 0, sizeof(v));
	v.rt = c->rt;
	if ((w = control_workers(c, &nw)) != NULL)
		for (size_t i = 0; i < nw; i++) {
			if (w[i].draining)
				v.workers_draining++;
			else
				v.workers++;
		}
	free(w);
	metrics_render(out, &v);
}

static void
control_cmd_metrics(struct control_conn *cc, struct evbuffer *out, int argc,
    char **argv)
{
	control_metrics(cc->c, out);
}

static void
control_cmd_status(struct control_conn *cc, struct evbuffer *out, int argc,
    char **argv)
{
	struct control *c = cc->c;
	const struct runtime *rt = c->rt;
	int64_t now = net_now_us();
	struct control_worker *w;
	size_t nw;

	if ((w = control_workers(c, &nw)) == NULL) {
		control_answer_error(out, "out of memory");
		return;
	}
	evbuffer_add_printf(out, "{\"version\":\"%s\",\"uptime_s\":%lld,"
	    "\"generation\":%u,\"workers\":[", SMTPFRONT_VERSION,
	    (long long)((now - c->started_us) / 1000000), rt->generation);
	for (size_t i = 0; i < nw; i++) {
		if (i > 0)
			evbuffer_add(out, ",", 1);
		control_json_worker(out, &w[i]);
	}
	free(w);
	evbuffer_add_printf(out, "],\"listeners\":[");
	for (size_t i = 0; i < rt->nlisteners; i++) {
		if (i > 0)
			evbuffer_add(out, ",", 1);
		control_json_listener(out, &rt->listeners[i]);
	}
	evbuffer_add_printf(out, "],\"deny\":");
	denyctl_status_json(out);
	evbuffer_add_printf(out, ",\"pools\":[");
	for (size_t i = 0; i < rt->npools; i++) {
		const struct cfg_pool *p = rt->pools[i].cfg;

		if (i > 0)
			evbuffer_add(out, ",", 1);
		evbuffer_add_printf(out, "{\"name\":");
		(void)!json_write_string(out, p->name);
		evbuffer_add_printf(out, ",\"balance\":\"%s\",\"servers\":[",
		    cfg_balance_names[p->balance]);
		for (size_t j = 0; j < p->nservers; j++) {
			if (j > 0)
				evbuffer_add(out, ",", 1);
			control_json_server(out, &p->servers[j],
			    rt->pools[i].server_slot[j], now);
		}
		evbuffer_add_printf(out, "]}");
	}
	evbuffer_add_printf(out, "]}\n");
}

static void
control_set_admin(struct control_conn *cc, struct evbuffer *out,
    const char *which, enum shm_admin state)
{
	struct control *c = cc->c;
	const struct runtime *rt = c->rt;
	const char *slash = strchr(which, '/');
	char msg[256];

	for (size_t i = 0; slash != NULL && i < rt->npools; i++) {
		const struct cfg_pool *p = rt->pools[i].cfg;

		if (strlen(p->name) != (size_t)(slash - which) ||
		    strncmp(p->name, which, (size_t)(slash - which)) != 0)
			continue;
		for (size_t j = 0; j < p->nservers; j++) {
			const struct cfg_server *s = &p->servers[j];

			if (strcmp(s->name, slash + 1) != 0)
				continue;
			if (control_admin_store(c, p->name, s, state) == -1) {
				control_answer_error(out, "out of memory");
				return;
			}
			shm_admin_set(rt->pools[i].server_slot[j], state);
			log_info("control: server %s/%s is now %s (uid %ld "
			    "pid %ld)", p->name, s->name,
			    shm_admin_names[state], (long)cc->uid,
			    (long)cc->pid);
			evbuffer_add_printf(out, "{\"ok\":true}\n");
			return;
		}
	}
	snprintf(msg, sizeof(msg), "unknown server %s", which);
	control_answer_error(out, msg);
}

static void
control_cmd_enable(struct control_conn *cc, struct evbuffer *out, int argc,
    char **argv)
{
	control_set_admin(cc, out, argv[1], SHM_ADMIN_READY);
}

static void
control_cmd_disable(struct control_conn *cc, struct evbuffer *out, int argc,
    char **argv)
{
	control_set_admin(cc, out, argv[1], SHM_ADMIN_MAINT);
}

static void
control_cmd_drain(struct control_conn *cc, struct evbuffer *out, int argc,
    char **argv)
{
	control_set_admin(cc, out, argv[1], SHM_ADMIN_DRAIN);
}

static void
control_cmd_reload(struct control_conn *cc, struct evbuffer *out, int argc,
    char **argv)
{
	struct control *c = cc->c;
	char who[96], err[512];

	snprintf(who, sizeof(who), "control client uid %ld pid %ld",
	    (long)cc->uid, (long)cc->pid);
	err[0] = '\0';
	/* Waiting before the call: the answer may come within it. */
	cc->state = CONTROL_WAITING;
	if (c->reload(c->workers_arg, who, err, sizeof(err)) == -1) {
		cc->state = CONTROL_ANSWERING;
		control_answer_error(out, err[0] != '\0' ? err :
		    "reload refused");
	}
}

static void
control_cmd_deny(struct control_conn *cc, struct evbuffer *out, int argc,
    char **argv)
{
	denyctl_command(out, cc->c->rt, argc, argv, cc->uid, cc->pid);
}

static void
control_cmd_upgrade(struct control_conn *cc, struct evbuffer *out, int argc,
    char **argv)
{
	struct control *c = cc->c;
	char who[96], err[512];

	if (argc > 2) {
		control_answer_error(out, "usage: upgrade [BINARY]");
		return;
	}
	snprintf(who, sizeof(who), "control client uid %ld pid %ld",
	    (long)cc->uid, (long)cc->pid);
	err[0] = '\0';
	cc->state = CONTROL_WAITING;
	if (c->upgrade(c->workers_arg, who, argc == 2 ? argv[1] : NULL, err,
	    sizeof(err)) == -1) {
		cc->state = CONTROL_ANSWERING;
		control_answer_error(out, err[0] != '\0' ? err :
		    "upgrade refused");
	}
}

/* Append each '\n'-terminated line of text as a JSON string array. */
static void
control_json_lines(struct evbuffer *out, const char *text)
{
	const char *p, *nl;
	bool first = true;
	char line[1024];

	evbuffer_add(out, "[", 1);
	for (p = text; p != NULL && (nl = strchr(p, '\n')) != NULL;
	    p = nl + 1) {
		snprintf(line, sizeof(line), "%.*s", (int)(nl - p), p);
		if (!first)
			evbuffer_add(out, ",", 1);
		(void)!json_write_string(out, line);
		first = false;
	}
	evbuffer_add(out, "]", 1);
}

static void control_conn_send(struct control_conn *cc);

static void
control_answer_done(struct control *c, unsigned generation,
    const char *binary, const char *errors, const char *warnings);

void
control_reload_done(struct control *c, unsigned generation,
    const char *errors, const char *warnings)
{
	control_answer_done(c, generation, NULL, errors, warnings);
}

void
control_upgrade_done(struct control *c, unsigned generation,
    const char *binary, const char *errors, const char *warnings)
{
	control_answer_done(c, generation, binary != NULL ? binary : "",
	    errors, warnings);
}

/* binary NULL: a reload's answer; else an upgrade's. */
static void
control_answer_done(struct control *c, unsigned generation,
    const char *binary, const char *errors, const char *warnings)
{
	const char *what = binary != NULL ? "upgrade" : "reload";
	struct control_conn *cc;

	if (c == NULL)
		return;
	TAILQ_FOREACH(cc, &c->conns, entry) {
		struct evbuffer *out;

		if (cc->state != CONTROL_WAITING)
			continue;
		out = bufferevent_get_output(cc->bev);
		if (generation != 0) {
			evbuffer_add_printf(out, "{\"ok\":true,"
			    "\"generation\":%u,", generation);
		} else {
			evbuffer_add_printf(out, "{\"ok\":false,\"error\":"
			    "\"%s failed; generation %u keeps running with "
			    "the configuration it has\",\"errors\":", what,
			    c->rt->generation);
			control_json_lines(out, errors);
			evbuffer_add(out, ",", 1);
		}
		if (binary != NULL) {
			evbuffer_add_printf(out, "\"version\":\"%s\","
			    "\"binary\":", SMTPFRONT_VERSION);
			(void)!json_write_string(out, binary);
			evbuffer_add(out, ",", 1);
		}
		evbuffer_add_printf(out, "\"warnings\":");
		control_json_lines(out, warnings);
		evbuffer_add_printf(out, "}\n");
		cc->state = CONTROL_ANSWERING;
		control_conn_send(cc);
	}
}

static const struct control_command control_commands[] = {
	{ "status", 0, "status", control_cmd_status, false },
	{ "enable", 1, "enable POOL/SERVER", control_cmd_enable, true },
	{ "disable", 1, "disable POOL/SERVER", control_cmd_disable, true },
	{ "drain", 1, "drain POOL/SERVER", control_cmd_drain, true },
	{ "reload", 0, "reload", control_cmd_reload, true },
	{ "upgrade", -1, "upgrade [BINARY]", control_cmd_upgrade, true },
	{ "metrics", 0, "metrics", control_cmd_metrics, false },
	/* deny list reads; deny add and del need the admin level */
	{ "deny", -1, "deny add CIDR [DURATION] [REASON] | deny del CIDR | "
	    "deny list", control_cmd_deny, true },
};

static bool
control_gid_in(const gid_t *groups, size_t n, gid_t gid)
{
	for (size_t i = 0; i < n; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

/* Whether gid is among the peer's groups: SO_PEERGROUPS, else (a kernel
 * before 4.13) the groups of the uid's account. */
static bool
control_peer_in_group(struct control_conn *cc, gid_t gid)
{
	gid_t stack[64], *groups;
	socklen_t len = sizeof(stack);
	int fd = bufferevent_getfd(cc->bev), ngroups;
	struct passwd *pw;
	bool found;

	if (cc->gid == gid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, stack, &len) == 0)
		return control_gid_in(stack, len / sizeof(gid_t), gid);
	if (errno == ERANGE) {
		if ((groups = malloc(len)) == NULL)
			return false;
		found = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups,
		    &len) == 0 && control_gid_in(groups, len / sizeof(gid_t),
		    gid);
		free(groups);
		return found;
	}
	if ((pw = getpwuid(cc->uid)) == NULL)
		return false;
	ngroups = (int)(sizeof(stack) / sizeof(stack[0]));
	if (getgrouplist(pw->pw_name, pw->pw_gid, stack, &ngroups) != -1)
		return control_gid_in(stack, (size_t)ngroups, gid);
	if (ngroups <= 0 || (groups = calloc((size_t)ngroups,
	    sizeof(gid_t))) == NULL)
		return false;
	found = getgrouplist(pw->pw_name, pw->pw_gid, groups, &ngroups) != -1 &&
	    control_gid_in(groups, (size_t)ngroups, gid);
	free(groups);
	return found;
}

static bool
control_peer_is_admin(struct control_conn *cc)
{
	const char *name = cc->c->rt->cfg->control.admin_group;
	struct group *gr;

	if (cc->admin != -1)
		return cc->admin == 1;
	cc->admin = 0;
	if (cc->uid == 0 || cc->uid == geteuid())
		cc->admin = 1;
	else if (name[0] != '\0' && (gr = getgrnam(name)) != NULL)
		cc->admin = control_peer_in_group(cc, gr->gr_gid);
	return cc->admin == 1;
}

static bool
control_needs_admin(const struct control_command *cmd, int argc, char **argv)
{
	if (strcmp(cmd->verb, "deny") == 0)
		return argc >= 2 && (strcmp(argv[1], "add") == 0 ||
		    strcmp(argv[1], "del") == 0);
	return cmd->admin;
}

/* What a client wrote, made safe to quote back: printable ASCII only,
 * bounded. */
static void
control_quote_verb(const char *in, char *out, size_t cap)
{
	size_t n = 0;

	for (; *in != '\0' && n + 4 < cap; in++)
		out[n++] = (*in > 0x20 && *in < 0x7f) ? *in : '?';
	if (*in != '\0')
		out[n++] = '.', out[n++] = '.', out[n++] = '.';
	out[n] = '\0';
}

static void
control_dispatch(struct control_conn *cc, char *line, struct evbuffer *out)
{
	char *argv[CONTROL_MAX_ARGS + 1], *save = NULL, *tok;
	char quoted[72], msg[192];
	int argc = 0;
	size_t off;

	for (tok = strtok_r(line, " \t\r", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t\r", &save)) {
		if (argc == CONTROL_MAX_ARGS) {
			control_answer_error(out, "too many arguments");
			return;
		}
		argv[argc++] = tok;
	}
	argv[argc] = NULL;
	if (argc == 0) {
		control_answer_error(out, "empty request");
		return;
	}
	for (size_t i = 0; i < sizeof(control_commands) /
	    sizeof(control_commands[0]); i++) {
		const struct control_command *cmd = &control_commands[i];

		if (strcmp(cmd->verb, argv[0]) != 0)
			continue;
		if (cmd->nargs >= 0 && argc - 1 != cmd->nargs) {
			snprintf(msg, sizeof(msg), "usage: %s", cmd->usage);
			control_answer_error(out, msg);
			return;
		}
		if (control_needs_admin(cmd, argc, argv) &&
		    !control_peer_is_admin(cc)) {
			const char *g = cc->c->rt->cfg->control.admin_group;
			char what[96];

			if (strcmp(cmd->verb, "deny") == 0)
				control_quote_verb(argc > 1 ? argv[1] : "",
				    quoted, 16);
			snprintf(what, sizeof(what), "%s%s%s", cmd->verb,
			    strcmp(cmd->verb, "deny") == 0 ? " " : "",
			    strcmp(cmd->verb, "deny") == 0 ? quoted : "");
			if (g[0] != '\0')
				snprintf(msg, sizeof(msg), "\"%s\" needs the "
				    "admin level (group %s)", what, g);
			else
				snprintf(msg, sizeof(msg), "\"%s\" needs the "
				    "admin level (root; no control.admin_group "
				    "is set)", what);
			log_info("control: refused \"%s\" to uid %ld pid %ld: "
			    "it needs the admin level", what, (long)cc->uid,
			    (long)cc->pid);
			control_answer_error(out, msg);
			return;
		}
		cmd->handler(cc, out, argc, argv);
		return;
	}
	control_quote_verb(argv[0], quoted, sizeof(quoted));
	off = (size_t)snprintf(msg, sizeof(msg), "unknown command \"%s\" (",
	    quoted);
	for (size_t i = 0; i < sizeof(control_commands) /
	    sizeof(control_commands[0]) && off < sizeof(msg); i++)
		off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s%s",
		    i > 0 ? ", " : "", control_commands[i].verb);
	if (off < sizeof(msg))
		snprintf(msg + off, sizeof(msg) - off, ")");
	control_answer_error(out, msg);
}

/* ------------------------------------------------------------ connections */

static void control_on_conn_event(struct bufferevent *bev, short what,
    void *arg);

static void
control_conn_free(struct control_conn *cc)
{
	struct control *c = cc->c;

	TAILQ_REMOVE(&c->conns, cc, entry);
	c->nconns--;
	/*
	 * bufferevent_free() closes the socket only when libevent runs its
	 * finalizers, later in this loop iteration; a child forked before
	 * that (a health process restarted by a reload) would inherit it
	 * (children close what they inherit, but a holder that misses one
	 * must not keep a client waiting for an EOF). shutdown() ends the
	 * connection for every holder now.
	 */
	(void)shutdown(bufferevent_getfd(cc->bev), SHUT_RDWR);
	bufferevent_free(cc->bev);
	if (cc->deadline != NULL)
		event_free(cc->deadline);
	free(cc);
}

static void
control_on_written(struct bufferevent *bev, void *arg)
{
	control_conn_free(arg);
}

/* The answer is in the output buffer: write it, then close. */
static void
control_conn_send(struct control_conn *cc)
{
	bufferevent_setcb(cc->bev, NULL, control_on_written,
	    control_on_conn_event, cc);
	bufferevent_enable(cc->bev, EV_WRITE);
}

/* Queue the answer to `line` (NULL: the request was too long) and close
 * once it is written; a reload waits for its answer instead. */
static void
control_conn_answer(struct control_conn *cc, char *line)
{
	struct evbuffer *out = bufferevent_get_output(cc->bev);

	cc->state = CONTROL_ANSWERING;
	bufferevent_disable(cc->bev, EV_READ);
	if (line == NULL)
		control_answer_error(out, "request too long");
	else
		control_dispatch(cc, line, out);
	if (cc->state == CONTROL_WAITING) {
		/* The master bounds a reload; no idle timeout meanwhile. */
		evtimer_del(cc->deadline);
		bufferevent_set_timeouts(cc->bev, NULL, NULL);
		return;
	}
	control_conn_send(cc);
}

static void
control_on_conn_read(struct bufferevent *bev, void *arg)
{
	struct control_conn *cc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n = 0;
	char *line;

	if (cc->state != CONTROL_READING)
		return;
	line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
	if (line != NULL) {
		if (n > CONTROL_LINE_MAX) {
			free(line);
			line = NULL;
		} else {
			/* A NUL would hide the rest of the line: keep it as
			 * an unprintable byte, so it shows as garbage. */
			for (size_t i = 0; i < n; i++)
				if (line[i] == '\0')
					line[i] = '\x01';
		}
		control_conn_answer(cc, line);
		free(line);
		return;
	}
	if (evbuffer_get_length(in) > CONTROL_LINE_MAX)
		control_conn_answer(cc, NULL);
}

static void
control_on_conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct control_conn *cc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);

	/* A client that wrote its command without a newline and shut down
	 * its side still gets an answer. */
	if ((what & BEV_EVENT_EOF) && cc->state == CONTROL_READING &&
	    len > 0 && len <= CONTROL_LINE_MAX) {
		char line[CONTROL_LINE_MAX + 1];

		evbuffer_remove(in, line, len);
		line[len] = '\0';
		for (size_t i = 0; i < len; i++)
			if (line[i] == '\0')
				line[i] = '\x01';
		control_conn_answer(cc, line);
		return;
	}
	if (cc->state == CONTROL_WAITING)
		return;			/* answered when the reload is over */
	if (what & BEV_EVENT_TIMEOUT)
		log_debug("control: closing an idle connection");
	control_conn_free(cc);
}

/* A client that trickles its request a byte at a time still gets
 * CONTROL_TIMEOUT_S in all, not per byte. */
static void
control_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	log_debug("control: closing a connection that did not finish its "
	    "request in %d s", CONTROL_TIMEOUT_S);
	control_conn_free(arg);
}

/* ------------------------------------------------------------ crowding */

static void
control_warn_flush(struct control *c)
{
	if (c->evicted + c->refused + c->paused == 0)
		return;
	log_warnx("control: crowded (at most %d connections, %d per user): "
	    "%u idle connection(s) closed to make room, %u refused, accepting "
	    "paused %u time(s) for lack of descriptors (next report in %d s "
	    "at the earliest)", CONTROL_MAX_CONNS, CONTROL_MAX_PER_UID,
	    c->evicted, c->refused, c->paused, CONTROL_WARN_EVERY_S);
	c->evicted = c->refused = c->paused = 0;
	c->warned_us = net_now_us();
}

static void
control_on_warn_timer(evutil_socket_t fd, short what, void *arg)
{
	control_warn_flush(arg);
}

/* Something crowded happened: say so now, or at the next report. */
static void
control_warn_crowded(struct control *c)
{
	int64_t next = c->warned_us + (int64_t)CONTROL_WARN_EVERY_S * 1000000;
	int64_t now = net_now_us();

	if (c->warned_us == 0 || now >= next) {
		control_warn_flush(c);
		return;
	}
	if (!evtimer_pending(c->warn_timer, NULL)) {
		struct timeval tv = { (next - now) / 1000000,
		    (next - now) % 1000000 };

		evtimer_add(c->warn_timer, &tv);
	}
}

/* Has the client sent a whole request line, even if not read yet? */
static bool
control_conn_has_request(struct control_conn *cc)
{
	struct evbuffer *in = bufferevent_get_input(cc->bev);
	struct evbuffer_ptr p;
	char buf[CONTROL_LINE_MAX + 1];
	ssize_t n;

	p = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
	if (p.pos != -1)
		return true;
	n = recv(bufferevent_getfd(cc->bev), buf, sizeof(buf),
	    MSG_PEEK | MSG_DONTWAIT);
	return n > 0 && memchr(buf, '\n', (size_t)n) != NULL;
}

/* Close the oldest connection (of `uid`, or of anyone when uid is -1)
 * that has not sent its request; false when there is none. */
static bool
control_evict(struct control *c, uid_t uid)
{
	struct control_conn *cc;

	TAILQ_FOREACH(cc, &c->conns, entry) {
		if (cc->state != CONTROL_READING ||
		    (uid != (uid_t)-1 && cc->uid != uid) ||
		    control_conn_has_request(cc))
			continue;
		log_debug("control: closing an idle connection of uid %ld to "
		    "make room", (long)cc->uid);
		control_conn_free(cc);
		c->evicted++;
		return true;
	}
	return false;
}

static size_t
control_conns_of(const struct control *c, uid_t uid)
{
	const struct control_conn *cc;
	size_t n = 0;

	TAILQ_FOREACH(cc, &c->conns, entry)
		n += cc->uid == uid;
	return n;
}

/* Room for one more connection of uid: true, or false (refuse it). */
static bool
control_make_room(struct control *c, uid_t uid)
{
	bool ok = true, crowded = false;

	if (control_conns_of(c, uid) >= CONTROL_MAX_PER_UID) {
		ok = control_evict(c, uid);
		crowded = true;
	}
	if (ok && c->nconns >= CONTROL_MAX_CONNS) {
		ok = control_evict(c, (uid_t)-1);
		crowded = true;
	}
	if (!ok)
		c->refused++;
	if (crowded)
		control_warn_crowded(c);
	return ok;
}

static void
control_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct control *c = arg;

	if (event_add(c->listen_ev, NULL) == -1)
		log_warnx("control: cannot watch the socket again");
}

static void
control_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct control *c = arg;
	struct timeval tv = { CONTROL_TIMEOUT_S, 0 };
	struct control_conn *cc;
	struct ucred cred;
	socklen_t credlen;
	int s;

	for (int i = 0; i < CONTROL_ACCEPT_BATCH; i++) {
		s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (s == -1) {
			struct timeval pause = { 0,
			    CONTROL_EMFILE_PAUSE_MS * 1000 };

			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR || errno == ECONNABORTED)
				return;
			if (errno != EMFILE && errno != ENFILE &&
			    errno != ENOBUFS && errno != ENOMEM) {
				log_warn("control: accept");
				return;
			}
			/* An idle connection's descriptor is the next
			 * client's; with none to take, wait: the socket
			 * stays readable, so watching it now would spin. */
			if (control_evict(c, (uid_t)-1)) {
				control_warn_crowded(c);
				continue;
			}
			c->paused++;
			control_warn_crowded(c);
			event_del(c->listen_ev);
			evtimer_add(c->resume_timer, &pause);
			return;
		}
		credlen = sizeof(cred);
		if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred,
		    &credlen) == -1) {
			cred.uid = (uid_t)-1;
			cred.gid = (gid_t)-1;
			cred.pid = 0;
		}
		if (!control_make_room(c, cred.uid)) {
			close(s);
			continue;
		}
		cc = calloc(1, sizeof(*cc));
		if (cc == NULL || (cc->bev = bufferevent_socket_new(c->base, s,
		    BEV_OPT_CLOSE_ON_FREE)) == NULL || (cc->deadline =
		    evtimer_new(c->base, control_on_deadline, cc)) == NULL) {
			log_warnx("control: out of memory");
			if (cc != NULL && cc->bev != NULL)
				bufferevent_free(cc->bev);
			else
				close(s);
			free(cc);
			continue;
		}
		cc->c = c;
		cc->uid = cred.uid;
		cc->gid = cred.gid;
		cc->pid = cred.pid;
		cc->admin = -1;
		cc->state = CONTROL_READING;
		TAILQ_INSERT_TAIL(&c->conns, cc, entry);
		c->nconns++;
		/* Reading stops one byte past the longest line allowed: that
		 * byte, without a newline before it, is the "too long". */
		bufferevent_setwatermark(cc->bev, EV_READ, 0,
		    CONTROL_LINE_MAX + 1);
		bufferevent_set_timeouts(cc->bev, &tv, &tv);
		evtimer_add(cc->deadline, &tv);
		bufferevent_setcb(cc->bev, control_on_conn_read, NULL,
		    control_on_conn_event, cc);
		bufferevent_enable(cc->bev, EV_READ);
	}
}

/* ------------------------------------------------------------ socket */

static int
control_mkdirs(const char *path)
{
	char dir[PATH_MAX];
	char *p;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return -1;
	p = strrchr(dir, '/');
	if (p == NULL || p == dir)
		return 0;
	*p = '\0';
	for (p = dir + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char save = *p;

		*p = '\0';
		if (mkdir(dir, 0755) == -1 && errno != EEXIST) {
			log_warn("control: cannot create directory %s", dir);
			return -1;
		}
		*p = save;
		if (save == '\0')
			return 0;
	}
}

/* 0: nothing there (or a stale socket, now removed); -1: refuse. */
static int
control_clear_path(const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, rc;

	if (lstat(sun->sun_path, &st) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		log_warnx("control: %s exists and is not a socket",
		    sun->sun_path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		log_warn("control: socket");
		return -1;
	}
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS) {
		close(fd);
		log_warnx("control: another process answers on %s (is "
		    "smtpfront already running?)", sun->sun_path);
		return -1;
	}
	close(fd);
	if (errno != ECONNREFUSED) {
		log_warn("control: cannot check %s", sun->sun_path);
		return -1;
	}
	if (unlink(sun->sun_path) == -1) {
		log_warn("control: cannot remove the stale socket %s",
		    sun->sun_path);
		return -1;
	}
	log_info("control: removed the stale socket %s", sun->sun_path);
	return 0;
}

static int
control_listen(struct control *c, const struct config *cfg)
{
	struct sockaddr_un sun;
	struct group *gr;
	mode_t old;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(cfg->control.socket) >= sizeof(sun.sun_path)) {
		log_warnx("control: socket path too long: %s",
		    cfg->control.socket);
		return -1;
	}
	memcpy(sun.sun_path, cfg->control.socket,
	    strlen(cfg->control.socket));
	if (control_mkdirs(sun.sun_path) == -1 ||
	    control_clear_path(&sun) == -1)
		return -1;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (c->fd == -1) {
		log_warn("control: socket");
		return -1;
	}
	/* Nobody but us may connect before mode and group are set. */
	old = umask(0177);
	if (bind(c->fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		umask(old);
		log_warn("control: cannot bind %s", sun.sun_path);
		return -1;
	}
	umask(old);
	snprintf(c->path, sizeof(c->path), "%s", sun.sun_path);
	if (cfg->control.group[0] != '\0') {
		gr = getgrnam(cfg->control.group);
		if (gr == NULL) {
			log_warnx("control: group \"%s\" does not exist",
			    cfg->control.group);
			return -1;
		}
		if (chown(c->path, (uid_t)-1, gr->gr_gid) == -1) {
			log_warn("control: chown %s", c->path);
			return -1;
		}
	}
	if (chmod(c->path, (mode_t)cfg->control.mode) == -1) {
		log_warn("control: chmod %s", c->path);
		return -1;
	}
	if (listen(c->fd, 16) == -1) {
		log_warn("control: listen %s", c->path);
		return -1;
	}
	return 0;
}

/* An upgrade: the admin states the previous image wrote, from shm. */
static void
control_admin_recover(struct control *c, const struct runtime *rt)
{
	for (size_t i = 0; i < rt->npools; i++) {
		const struct cfg_pool *p = rt->pools[i].cfg;

		for (size_t j = 0; j < p->nservers; j++) {
			enum shm_admin a = shm_admin_get(
			    rt->pools[i].server_slot[j]);

			if (a != SHM_ADMIN_READY &&
			    control_admin_store(c, p->name, &p->servers[j],
			    a) == -1)
				log_warnx("control: out of memory keeping the "
				    "admin state of %s/%s", p->name,
				    p->servers[j].name);
		}
	}
}

int
control_fd(const struct control *c)
{
	return c->fd;
}

int64_t
control_started_us(const struct control *c)
{
	return c->started_us;
}

void
control_set_started_us(struct control *c, int64_t us)
{
	c->started_us = us;
}

int
control_waiting_fd(const struct control *c, uid_t *uid, pid_t *pid)
{
	const struct control_conn *cc;

	TAILQ_FOREACH(cc, &c->conns, entry) {
		if (cc->state != CONTROL_WAITING)
			continue;
		*uid = cc->uid;
		*pid = cc->pid;
		return bufferevent_getfd(cc->bev);
	}
	return -1;
}

void
control_adopt_waiting(struct control *c, int fd, uid_t uid, pid_t pid)
{
	struct control_conn *cc = calloc(1, sizeof(*cc));

	(void)evutil_make_socket_nonblocking(fd);
	(void)evutil_make_socket_closeonexec(fd);
	if (cc == NULL || (cc->bev = bufferevent_socket_new(c->base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL || (cc->deadline =
	    evtimer_new(c->base, control_on_deadline, cc)) == NULL) {
		log_warnx("control: out of memory: the upgrade will not be "
		    "answered");
		if (cc != NULL && cc->bev != NULL)
			bufferevent_free(cc->bev);
		else
			close(fd);
		free(cc);
		return;
	}
	cc->c = c;
	cc->uid = uid;
	cc->gid = (gid_t)-1;
	cc->pid = pid;
	cc->admin = 1;		/* it was let do the upgrade it waits for */
	cc->state = CONTROL_WAITING;
	TAILQ_INSERT_TAIL(&c->conns, cc, entry);
	c->nconns++;
	bufferevent_setcb(cc->bev, NULL, NULL, control_on_conn_event, cc);
}

struct control *
control_new(struct event_base *base, const struct runtime *rt,
    control_workers_fn workers, control_reload_fn reload,
    control_upgrade_fn upgrade, void *arg, int fd)
{
	struct control *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		log_warnx("control: out of memory");
		return NULL;
	}
	c->base = base;
	c->rt = rt;
	c->workers = workers;
	c->reload = reload;
	c->upgrade = upgrade;
	c->workers_arg = arg;
	c->fd = -1;
	c->started_us = net_now_us();
	TAILQ_INIT(&c->conns);
	if (fd != -1) {
		c->fd = fd;
		(void)evutil_make_socket_nonblocking(fd);
		(void)evutil_make_socket_closeonexec(fd);
		snprintf(c->path, sizeof(c->path), "%s",
		    rt->cfg->control.socket);
		control_admin_recover(c, rt);
	} else if (control_listen(c, rt->cfg) == -1) {
		control_free(c);
		return NULL;
	}
	c->listen_ev = event_new(base, c->fd, EV_READ | EV_PERSIST,
	    control_on_accept, c);
	c->resume_timer = evtimer_new(base, control_on_resume, c);
	c->warn_timer = evtimer_new(base, control_on_warn_timer, c);
	if (c->listen_ev == NULL || c->resume_timer == NULL ||
	    c->warn_timer == NULL || event_add(c->listen_ev, NULL) == -1) {
		log_warnx("control: cannot watch the socket");
		control_free(c);
		return NULL;
	}
	control_set_runtime(c, rt);
	log_info("control: %s %s", fd != -1 ? "serving, as before the "
	    "upgrade," : "listening on", c->path);
	return c;
}

void
control_free(struct control *c)
{
	if (c == NULL)
		return;
	while (!TAILQ_EMPTY(&c->conns))
		control_conn_free(TAILQ_FIRST(&c->conns));
	if (c->listen_ev != NULL)
		event_free(c->listen_ev);
	if (c->resume_timer != NULL)
		event_free(c->resume_timer);
	if (c->warn_timer != NULL)
		event_free(c->warn_timer);
	if (c->fd != -1)
		close(c->fd);
	if (c->path[0] != '\0')
		unlink(c->path);
	free(c->admin);
	free(c);
}
