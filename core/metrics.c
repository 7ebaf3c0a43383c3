/* SPDX-License-Identifier: MIT */
/*
 * metrics: the counting calls of workers and of the health process, the
 * master's own counters, and the rendering of every family (names, help,
 * labels, buckets) through prom.c. Names follow Prometheus conventions:
 * the smtpfront_ prefix, _total counters, base units (seconds, bytes).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "core/log.h"
#include "core/deny.h"
#include "core/metrics.h"
#include "core/prom.h"
#include "core/runtime.h"
#include "core/shm.h"

const char *const metrics_reason_names[] = {
	"connect-refused", "connect-timeout", "connect-error", "closed",
	"greeting-timeout", "greeting-4xx", "greeting-5xx", "proxy", "ehlo",
	"quit", "other",
};
_Static_assert(sizeof(metrics_reason_names) / sizeof(char *) ==
    METRICS_NREASONS, "reason names");

const char *const metrics_result_names[] = {
	"ok", "no-backend", "overload", "client-limit", "client-rate",
	"denied", "shutdown",
	"client-timeout", "server-timeout", "client-closed", "server-closed",
	"greeting-failed", "bad-proxy-header", "untrusted-proxy",
};
_Static_assert(sizeof(metrics_result_names) / sizeof(char *) ==
    METRICS_NRESULTS, "result names");

/* What the gate can fail with (the other classes are the checks'). */
static const enum metrics_reason gate_reasons[] = {
	METRICS_CONNECT_REFUSED, METRICS_CONNECT_TIMEOUT,
	METRICS_CONNECT_ERROR, METRICS_CLOSED, METRICS_GREETING_TIMEOUT,
	METRICS_GREETING_4XX, METRICS_OTHER,
};
/* Results that are a refusal: smtpfront said no before any server. */
static const enum metrics_result refusal_results[] = {
	METRICS_OVERLOAD, METRICS_CLIENT_LIMIT, METRICS_CLIENT_RATE,
	METRICS_DENIED, METRICS_UNTRUSTED_PROXY, METRICS_BAD_PROXY_HEADER,
};

/*
 * Bucket bounds in microseconds, chosen for SMTP: a backend connect on a
 * LAN takes well under a millisecond and connect_timeout is 5 s;
 * postscreen greets at once or after its 6 s greet wait (greeting_timeout
 * is 30 s); a check waits the same, bounded by its 10 s timeout; a
 * session lasts from milliseconds (a refusal) to many minutes (a slow
 * upload, client_timeout is 10 minutes).
 */
struct metrics_hist {
	const char *name;
	const char *help;
	const uint64_t *bounds_us;
	size_t nbounds;			/* < METRICS_HIST_SLOTS */
};

static const uint64_t connect_us[] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};
static const uint64_t first_line_us[] = {
	1000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
	2500000, 5000000, 7500000, 10000000, 30000000, 60000000,
};
static const uint64_t check_us[] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 7500000, 10000000, 30000000,
};
static const uint64_t session_us[] = {
	10000, 50000, 100000, 500000, 1000000, 2500000, 5000000, 10000000,
	30000000, 60000000, 120000000, 300000000, 600000000, 1800000000,
	3600000000,
};
#define NB(a)	(sizeof(a) / sizeof((a)[0]))
_Static_assert(NB(connect_us) < METRICS_HIST_SLOTS, "buckets");
_Static_assert(NB(first_line_us) < METRICS_HIST_SLOTS, "buckets");
_Static_assert(NB(check_us) < METRICS_HIST_SLOTS, "buckets");
_Static_assert(NB(session_us) < METRICS_HIST_SLOTS, "buckets");

static const struct metrics_hist hist_connect = {
	"smtpfront_backend_connect_seconds",
	"Time to connect to a server and send the PROXY header, for "
	"connects that completed.",
	connect_us, NB(connect_us),
};
static const struct metrics_hist hist_first_line = {
	"smtpfront_gate_first_line_seconds",
	"Time from the start of an attempt (connect included) to the "
	"server's first reply line, for attempts that passed the gate.",
	first_line_us, NB(first_line_us),
};
static const struct metrics_hist hist_check = {
	"smtpfront_check_duration_seconds",
	"Duration of health checks, passed or failed.",
	check_us, NB(check_us),
};
static const struct metrics_hist hist_session = {
	"smtpfront_session_duration_seconds",
	"Duration of sessions, from accept to the session line.",
	session_us, NB(session_us),
};

/* Single writer: a plain read-modify-write, published for readers. */
static void
metrics_add(uint64_t *w, uint64_t n)
{
	__atomic_store_n(w, *w + n, __ATOMIC_RELAXED);
}

static void
metrics_observe(uint64_t *h, const struct metrics_hist *def, int64_t us)
{
	uint64_t v = us > 0 ? (uint64_t)us : 0;
	size_t i;

	for (i = 0; i < def->nbounds && v > def->bounds_us[i]; i++)
		;
	metrics_add(&h[i], 1);
	metrics_add(&h[METRICS_HIST_SLOTS], v);
}

int
metrics_result_index(const char *result)
{
	for (int i = 0; result != NULL && i < METRICS_NRESULTS; i++)
		if (strcmp(result, metrics_result_names[i]) == 0)
			return i;
	return -1;
}

/* ------------------------------------------------------------ workers */

static uint64_t *mine_listeners, *mine_servers;
static size_t mine_nlisteners, mine_nservers;

void
metrics_worker_attach(void)
{
	uint64_t *mine;
	size_t len = 0;

	mine_listeners = shm_slot_mine(SHM_SLOT_LISTENER_METRICS, &len);
	mine_nlisteners = mine_listeners != NULL ? len / sizeof(uint64_t) /
	    METRICS_LISTENER_WORDS : 0;
	mine_servers = shm_slot_mine(SHM_SLOT_SERVER_METRICS, &len);
	mine_nservers = mine_servers != NULL ? len / sizeof(uint64_t) /
	    METRICS_SERVER_WORDS : 0;
	mine = shm_slot_mine(SHM_SLOT_PROCESS_METRICS, &len);
	if (mine != NULL && len >= METRICS_PROCESS_WORDS * sizeof(uint64_t))
		log_count_drops_in(&mine[METRICS_PW_LOG_DROPPED]);
}

void
metrics_count_session(unsigned listener, const char *result,
    uint64_t bytes_in, uint64_t bytes_out, int64_t duration_us)
{
	uint64_t *w;
	int r = metrics_result_index(result);

	if (listener >= mine_nlisteners)
		return;
	w = mine_listeners + (size_t)listener * METRICS_LISTENER_WORDS;
	if (r >= 0)
		metrics_add(&w[METRICS_LW_RESULTS + r], 1);
	metrics_add(&w[METRICS_LW_BYTES_IN], bytes_in);
	metrics_add(&w[METRICS_LW_BYTES_OUT], bytes_out);
	metrics_observe(&w[METRICS_LW_DURATION], &hist_session, duration_us);
}

static uint64_t *
metrics_server_words(unsigned server)
{
	if (server >= mine_nservers)
		return NULL;
	return mine_servers + (size_t)server * METRICS_SERVER_WORDS;
}

void
metrics_count_failover(unsigned server, enum metrics_reason r)
{
	uint64_t *w = metrics_server_words(server);

	if (w != NULL && (unsigned)r < METRICS_NREASONS)
		metrics_add(&w[METRICS_SW_FAILOVERS + r], 1);
}

void
metrics_count_connect(unsigned server, int64_t us)
{
	uint64_t *w = metrics_server_words(server);

	if (w != NULL)
		metrics_observe(&w[METRICS_SW_CONNECT], &hist_connect, us);
}

void
metrics_count_first_line(unsigned server, int64_t us)
{
	uint64_t *w = metrics_server_words(server);

	if (w != NULL)
		metrics_observe(&w[METRICS_SW_FIRST_LINE], &hist_first_line,
		    us);
}

enum metrics_reason
metrics_connect_reason(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return METRICS_CONNECT_REFUSED;
	case ETIMEDOUT:
		return METRICS_CONNECT_TIMEOUT;
	default:
		return METRICS_CONNECT_ERROR;
	}
}

/* ------------------------------------------------------------ health */

void
metrics_health_attach(void)
{
	uint64_t *w = shm_process_counters(SHM_PROCESS_HEALTH);

	if (w != NULL)
		log_count_drops_in(&w[METRICS_PW_LOG_DROPPED]);
}

static bool
metrics_starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

enum metrics_reason
metrics_check_reason(const char *reason)
{
	/* smtp/check.c adds this hint where a missing or unexpected header
	 * is the likely cause: that is what the operator must fix. */
	if (strstr(reason, "PROXY header") != NULL)
		return METRICS_PROXY;
	if (strcmp(reason, "timeout connecting") == 0 ||
	    strcmp(reason, "connect: connection timed out") == 0)
		return METRICS_CONNECT_TIMEOUT;
	if (strcmp(reason, "connect: connection refused") == 0)
		return METRICS_CONNECT_REFUSED;
	if (metrics_starts(reason, "connect: ") ||
	    metrics_starts(reason, "socket: ") ||
	    metrics_starts(reason, "getsockname: ") ||
	    metrics_starts(reason, "getpeername: "))
		return METRICS_CONNECT_ERROR;
	if (metrics_starts(reason, "timeout waiting for greeting"))
		return METRICS_GREETING_TIMEOUT;
	if (metrics_starts(reason, "greeting 4"))
		return METRICS_GREETING_4XX;
	if (metrics_starts(reason, "greeting 5"))
		return METRICS_GREETING_5XX;
	if (metrics_starts(reason, "connection closed") ||
	    metrics_starts(reason, "read: ") ||
	    metrics_starts(reason, "write: "))
		return METRICS_CLOSED;
	if (metrics_starts(reason, "EHLO answered") ||
	    metrics_starts(reason, "timeout waiting for EHLO"))
		return METRICS_EHLO;
	if (metrics_starts(reason, "QUIT answered") ||
	    metrics_starts(reason, "timeout waiting for QUIT"))
		return METRICS_QUIT;
	return METRICS_OTHER;
}

void
metrics_count_check(unsigned server, bool ok, const char *reason,
    double elapsed_ms)
{
	uint64_t *w = shm_server_checks(server);

	if (w == NULL)
		return;
	if (!ok)
		metrics_add(&w[METRICS_CW_FAILURES +
		    metrics_check_reason(reason)], 1);
	metrics_observe(&w[METRICS_CW_DURATION], &hist_check,
	    (int64_t)(elapsed_ms * 1000.0));
}

/* ------------------------------------------------------------ master */

static struct metrics_master_state mm;	/* start_time: Unix time */
static const char *const metrics_upgrade_names[METRICS_NUPGRADE] = {
	"ok", "failed", "refused", "exec_failed",
};

void
metrics_master_start(void)
{
	struct timespec ts;

	memset(&mm, 0, sizeof(mm));
	clock_gettime(CLOCK_REALTIME, &ts);
	mm.start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	mm.last_reload_ok = true;
}

void
metrics_master_attach(void)
{
	uint64_t *w = shm_process_counters(SHM_PROCESS_MASTER);

	if (w != NULL)
		log_count_drops_in(&w[METRICS_PW_LOG_DROPPED]);
}

uint64_t
metrics_log_dropped(void)
{
	uint64_t sum = 0;

	shm_counters_sum(SHM_SLOT_PROCESS_METRICS, METRICS_PW_LOG_DROPPED, 1,
	    &sum);
	for (int p = 0; p < SHM_NPROCESSES; p++) {
		const uint64_t *w = shm_process_counters((enum shm_process)p);

		if (w != NULL)
			sum += __atomic_load_n(&w[METRICS_PW_LOG_DROPPED],
			    __ATOMIC_RELAXED);
	}
	return sum;
}

void
metrics_note_reload(bool ok)
{
	if (ok)
		mm.reloads++;
	else
		mm.reload_failures++;
	mm.last_reload_ok = ok;
}

void
metrics_note_upgrade(enum metrics_upgrade result)
{
	mm.upgrades[result]++;
}

void
metrics_master_save(struct metrics_master_state *out)
{
	*out = mm;
}

void
metrics_master_restore(const struct metrics_master_state *in)
{
	mm = *in;
}

void
metrics_note_restart(bool health_process)
{
	if (health_process)
		mm.health_restarts++;
	else
		mm.worker_restarts++;
}

void
metrics_note_sandbox_kill(void)
{
	mm.sandbox_kills++;
}

void
metrics_listener_results(unsigned listener, uint64_t out[METRICS_NRESULTS])
{
	shm_counters_sum(SHM_SLOT_LISTENER_METRICS,
	    (size_t)listener * METRICS_LISTENER_WORDS + METRICS_LW_RESULTS,
	    METRICS_NRESULTS, out);
}

/* One server as the render needs it, read once. */
struct metrics_server {
	const char *pool;
	const char *name;
	const char *state;
	uint32_t active;
	uint64_t total;
	uint64_t w[METRICS_SERVER_WORDS];
	uint64_t c[METRICS_CHECK_WORDS];
};

struct metrics_listener {
	const char *name;
	unsigned max;
	uint32_t active;
	uint64_t w[METRICS_LISTENER_WORDS];
};

static const char *const server_states[] = {
	"unknown", "up", "down", "drain", "maint",
};

static void
metrics_read_server(struct metrics_server *s, unsigned slot)
{
	enum shm_admin admin = shm_admin_get(slot);
	const uint64_t *c = shm_server_checks(slot);

	s->state = admin != SHM_ADMIN_READY ? shm_admin_names[admin] :
	    shm_health_names[shm_health_state(slot)];
	s->active = shm_server_active(slot);
	s->total = shm_server_total(slot);
	shm_counters_sum(SHM_SLOT_SERVER_METRICS,
	    (size_t)slot * METRICS_SERVER_WORDS, METRICS_SERVER_WORDS, s->w);
	for (size_t i = 0; i < METRICS_CHECK_WORDS; i++)
		s->c[i] = c != NULL ? __atomic_load_n(&c[i],
		    __ATOMIC_RELAXED) : 0;
}

static void
metrics_hist_series(struct evbuffer *out, const struct metrics_hist *def,
    const struct prom_label *l, size_t nl, const uint64_t *h)
{
	double bounds[METRICS_HIST_SLOTS];

	for (size_t i = 0; i < def->nbounds; i++)
		bounds[i] = (double)def->bounds_us[i] / 1e6;
	prom_histogram(out, def->name, l, nl, bounds, def->nbounds, h,
	    (double)h[METRICS_HIST_SLOTS] / 1e6);
}

static void
metrics_render_master(struct evbuffer *out, const struct metrics_view *v)
{
	struct prom_label l[1];

	prom_family(out, "smtpfront_build_info", PROM_GAUGE,
	    "The version of smtpfront running, as a label.");
	l[0] = (struct prom_label){ "version", SMTPFRONT_VERSION };
	prom_sample(out, "smtpfront_build_info", l, 1, 1);
	prom_family(out, "smtpfront_start_time_seconds", PROM_GAUGE,
	    "When smtpfront started, in seconds since the Unix epoch; "
	    "counters start from zero then.");
	prom_sample(out, "smtpfront_start_time_seconds", NULL, 0,
	    mm.start_time);
	prom_family(out, "smtpfront_generation", PROM_GAUGE,
	    "The configuration generation running (1 at start, one more at "
	    "each successful reload).");
	prom_sample(out, "smtpfront_generation", NULL, 0,
	    v->rt->generation);
	prom_family(out, "smtpfront_workers", PROM_GAUGE,
	    "Worker processes running: serving the current generation, or "
	    "draining an older one.");
	l[0] = (struct prom_label){ "state", "serving" };
	prom_sample(out, "smtpfront_workers", l, 1, v->workers);
	l[0] = (struct prom_label){ "state", "draining" };
	prom_sample(out, "smtpfront_workers", l, 1, v->workers_draining);
	prom_family(out, "smtpfront_reloads_total", PROM_COUNTER,
	    "Reloads that succeeded.");
	prom_sample_u64(out, "smtpfront_reloads_total", NULL, 0, mm.reloads);
	prom_family(out, "smtpfront_reload_failures_total", PROM_COUNTER,
	    "Reloads that failed (the running generation went on).");
	prom_sample_u64(out, "smtpfront_reload_failures_total", NULL, 0,
	    mm.reload_failures);
	prom_family(out, "smtpfront_config_last_reload_successful",
	    PROM_GAUGE, "1 when the last reload succeeded (or none was "
	    "tried), 0 when it failed.");
	prom_sample(out, "smtpfront_config_last_reload_successful", NULL, 0,
	    mm.last_reload_ok ? 1 : 0);
	prom_family(out, "smtpfront_worker_restarts_total", PROM_COUNTER,
	    "Workers that died unexpectedly (and were respawned).");
	prom_sample_u64(out, "smtpfront_worker_restarts_total", NULL, 0,
	    mm.worker_restarts);
	prom_family(out, "smtpfront_health_process_restarts_total",
	    PROM_COUNTER, "Times the health process died unexpectedly (and "
	    "was respawned).");
	prom_sample_u64(out, "smtpfront_health_process_restarts_total", NULL,
	    0, mm.health_restarts);
	prom_family(out, "smtpfront_log_dropped_total", PROM_COUNTER,
	    "Log lines dropped because the log (stderr or syslog) was not "
	    "taking them, by every process.");
	prom_sample_u64(out, "smtpfront_log_dropped_total", NULL, 0,
	    metrics_log_dropped());
	prom_family(out, "smtpfront_deny_entries", PROM_GAUGE,
	    "Runtime deny entries (smtpfrontctl deny add, fail2ban) in the "
	    "table, which holds at most smtpfront_deny_entries_max.");
	prom_sample(out, "smtpfront_deny_entries", NULL, 0,
	    (double)deny_count());
	prom_family(out, "smtpfront_deny_entries_max", PROM_GAUGE,
	    "Runtime deny entries the table can hold.");
	prom_sample(out, "smtpfront_deny_entries_max", NULL, 0, DENY_MAX);
	prom_family(out, "smtpfront_sandbox_kills_total", PROM_COUNTER,
	    "Children (workers or the health process) the sandbox killed for "
	    "a forbidden system call.");
	prom_sample_u64(out, "smtpfront_sandbox_kills_total", NULL, 0,
	    mm.sandbox_kills);
	prom_family(out, "smtpfront_upgrades_total", PROM_COUNTER,
	    "Binary upgrades by result: ok (the new image runs a new "
	    "generation), failed (it could not start one: the previous "
	    "workers kept serving), refused (it could not read the state "
	    "handed over: the previous image took it back), exec_failed.");
	for (int i = 0; i < METRICS_NUPGRADE; i++) {
		l[0] = (struct prom_label){ "result", metrics_upgrade_names[i] };
		prom_sample_u64(out, "smtpfront_upgrades_total", l, 1,
		    mm.upgrades[i]);
	}
}

static void
metrics_render_listeners(struct evbuffer *out, struct metrics_listener *ls,
    size_t n)
{
	struct prom_label l[2];

	prom_family(out, "smtpfront_listener_active_sessions", PROM_GAUGE,
	    "Sessions open on a listener (counted against its "
	    "max_connections).");
	for (size_t i = 0; i < n; i++) {
		l[0] = (struct prom_label){ "listener", ls[i].name };
		prom_sample(out, "smtpfront_listener_active_sessions", l, 1,
		    ls[i].active);
	}
	prom_family(out, "smtpfront_listener_max_connections", PROM_GAUGE,
	    "The max_connections of a listener.");
	for (size_t i = 0; i < n; i++) {
		l[0] = (struct prom_label){ "listener", ls[i].name };
		prom_sample(out, "smtpfront_listener_max_connections", l, 1,
		    ls[i].max);
	}
	prom_family(out, "smtpfront_sessions_total", PROM_COUNTER,
	    "Sessions that ended, by listener and result (the result= of "
	    "their session line).");
	for (size_t i = 0; i < n; i++) {
		l[0] = (struct prom_label){ "listener", ls[i].name };
		for (int r = 0; r < METRICS_NRESULTS; r++) {
			l[1] = (struct prom_label){ "result",
			    metrics_result_names[r] };
			prom_sample_u64(out, "smtpfront_sessions_total", l, 2,
			    ls[i].w[METRICS_LW_RESULTS + r]);
		}
	}
	prom_family(out, "smtpfront_refusals_total", PROM_COUNTER,
	    "Sessions refused by smtpfront itself before any server, by "
	    "listener and reason (a subset of smtpfront_sessions_total).");
	for (size_t i = 0; i < n; i++) {
		l[0] = (struct prom_label){ "listener", ls[i].name };
		for (size_t r = 0; r < NB(refusal_results); r++) {
			l[1] = (struct prom_label){ "reason",
			    metrics_result_names[refusal_results[r]] };
			prom_sample_u64(out, "smtpfront_refusals_total", l, 2,
			    ls[i].w[METRICS_LW_RESULTS + refusal_results[r]]);
		}
	}
	prom_family(out, "smtpfront_bytes_in_total", PROM_COUNTER,
	    "Bytes read from clients and relayed to servers.");
	for (size_t i = 0; i < n; i++) {
		l[0] = (struct prom_label){ "listener", ls[i].name };
		prom_sample_u64(out, "smtpfront_bytes_in_total", l, 1,
		    ls[i].w[METRICS_LW_BYTES_IN]);
	}
	prom_family(out, "smtpfront_bytes_out_total", PROM_COUNTER,
	    "Bytes read from servers and relayed to clients.");
	for (size_t i = 0; i < n; i++) {
		l[0] = (struct prom_label){ "listener", ls[i].name };
		prom_sample_u64(out, "smtpfront_bytes_out_total", l, 1,
		    ls[i].w[METRICS_LW_BYTES_OUT]);
	}
	prom_family(out, hist_session.name, PROM_HISTOGRAM, hist_session.help);
	for (size_t i = 0; i < n; i++) {
		l[0] = (struct prom_label){ "listener", ls[i].name };
		metrics_hist_series(out, &hist_session, l, 1,
		    &ls[i].w[METRICS_LW_DURATION]);
	}
}

static void
metrics_render_servers(struct evbuffer *out, struct metrics_server *ss,
    size_t n)
{
	struct prom_label l[3];

#define SERVER_LABELS(s) \
	l[0] = (struct prom_label){ "pool", (s)->pool }; \
	l[1] = (struct prom_label){ "server", (s)->name }

	prom_family(out, "smtpfront_server_state", PROM_GAUGE,
	    "1 for the state a server is in: unknown, up, down (health), "
	    "drain or maint (admin, which wins); 0 for the others.");
	for (size_t i = 0; i < n; i++) {
		SERVER_LABELS(&ss[i]);
		for (size_t k = 0; k < NB(server_states); k++) {
			l[2] = (struct prom_label){ "state", server_states[k] };
			prom_sample(out, "smtpfront_server_state", l, 3,
			    strcmp(ss[i].state, server_states[k]) == 0);
		}
	}
	prom_family(out, "smtpfront_server_active_sessions", PROM_GAUGE,
	    "Sessions (and attempts in flight) on a server.");
	for (size_t i = 0; i < n; i++) {
		SERVER_LABELS(&ss[i]);
		prom_sample(out, "smtpfront_server_active_sessions", l, 2,
		    ss[i].active);
	}
	prom_family(out, "smtpfront_server_sessions_total", PROM_COUNTER,
	    "Sessions relayed to a server (it passed the gate).");
	for (size_t i = 0; i < n; i++) {
		SERVER_LABELS(&ss[i]);
		prom_sample_u64(out, "smtpfront_server_sessions_total", l, 2,
		    ss[i].total);
	}
	prom_family(out, "smtpfront_gate_failovers_total", PROM_COUNTER,
	    "Attempts on a server that failed before its first line, unseen "
	    "by the client (the session moved to another server, or got a "
	    "421), by reason.");
	for (size_t i = 0; i < n; i++) {
		SERVER_LABELS(&ss[i]);
		for (size_t k = 0; k < NB(gate_reasons); k++) {
			l[2] = (struct prom_label){ "reason",
			    metrics_reason_names[gate_reasons[k]] };
			prom_sample_u64(out, "smtpfront_gate_failovers_total",
			    l, 3, ss[i].w[METRICS_SW_FAILOVERS +
			    gate_reasons[k]]);
		}
	}
	prom_family(out, hist_connect.name, PROM_HISTOGRAM, hist_connect.help);
	for (size_t i = 0; i < n; i++) {
		SERVER_LABELS(&ss[i]);
		metrics_hist_series(out, &hist_connect, l, 2,
		    &ss[i].w[METRICS_SW_CONNECT]);
	}
	prom_family(out, hist_first_line.name, PROM_HISTOGRAM,
	    hist_first_line.help);
	for (size_t i = 0; i < n; i++) {
		SERVER_LABELS(&ss[i]);
		metrics_hist_series(out, &hist_first_line, l, 2,
		    &ss[i].w[METRICS_SW_FIRST_LINE]);
	}
	prom_family(out, "smtpfront_check_failures_total", PROM_COUNTER,
	    "Health checks of a server that failed, by reason.");
	for (size_t i = 0; i < n; i++) {
		SERVER_LABELS(&ss[i]);
		for (int k = 0; k < METRICS_NREASONS; k++) {
			l[2] = (struct prom_label){ "reason",
			    metrics_reason_names[k] };
			prom_sample_u64(out, "smtpfront_check_failures_total",
			    l, 3, ss[i].c[METRICS_CW_FAILURES + k]);
		}
	}
	prom_family(out, hist_check.name, PROM_HISTOGRAM, hist_check.help);
	for (size_t i = 0; i < n; i++) {
		SERVER_LABELS(&ss[i]);
		metrics_hist_series(out, &hist_check, l, 2,
		    &ss[i].c[METRICS_CW_DURATION]);
	}
#undef SERVER_LABELS
}

void
metrics_render(struct evbuffer *out, const struct metrics_view *v)
{
	const struct runtime *rt = v->rt;
	struct metrics_listener *ls;
	struct metrics_server *ss;
	size_t nservers = 0, k = 0;

	for (size_t i = 0; i < rt->npools; i++)
		nservers += rt->pools[i].cfg->nservers;
	ls = calloc(rt->nlisteners + 1, sizeof(*ls));
	ss = calloc(nservers + 1, sizeof(*ss));
	if (ls == NULL || ss == NULL) {
		free(ls);
		free(ss);
		evbuffer_add_printf(out, "# smtpfront: out of memory\n");
		return;
	}
	for (size_t i = 0; i < rt->nlisteners; i++) {
		const struct rt_listener *rl = &rt->listeners[i];

		ls[i].name = rl->cfg->name;
		ls[i].max = rl->cfg->max_connections;
		ls[i].active = shm_listener_active(rl->slot);
		shm_counters_sum(SHM_SLOT_LISTENER_METRICS,
		    (size_t)rl->slot * METRICS_LISTENER_WORDS,
		    METRICS_LISTENER_WORDS, ls[i].w);
	}
	for (size_t i = 0; i < rt->npools; i++) {
		const struct cfg_pool *p = rt->pools[i].cfg;

		for (size_t j = 0; j < p->nservers; j++, k++) {
			ss[k].pool = p->name;
			ss[k].name = p->servers[j].name;
			metrics_read_server(&ss[k], rt->pools[i].server_slot[j]);
		}
	}
	metrics_render_master(out, v);
	metrics_render_listeners(out, ls, rt->nlisteners);
	metrics_render_servers(out, ss, nservers);
	free(ls);
	free(ss);
}
