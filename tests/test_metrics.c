/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/metrics.c: the classes of failure reasons, and the
 * whole exposition rendered from shared memory as workers and the health
 * process count into it: every family declared once with HELP and TYPE,
 * no series twice, histograms consistent; counts summed over worker slots
 * and kept when a worker's slot is reset (it exited), zeroed when a slot
 * changes hands.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <check.h>

#include "config/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/runtime.h"
#include "core/shm.h"

/* ------------------------------------------------------------ classes */

static const struct {
	const char *reason;
	enum metrics_reason want;
} check_vectors[] = {
	{ "connect: connection refused", METRICS_CONNECT_REFUSED },
	{ "timeout connecting", METRICS_CONNECT_TIMEOUT },
	{ "connect: connection timed out", METRICS_CONNECT_TIMEOUT },
	{ "connect: no route to host", METRICS_CONNECT_ERROR },
	{ "socket: too many open files", METRICS_CONNECT_ERROR },
	{ "timeout waiting for greeting", METRICS_GREETING_TIMEOUT },
	{ "greeting 421 4.3.2 All server ports are busy", METRICS_GREETING_4XX },
	{ "greeting 554 5.7.1 Go away", METRICS_GREETING_5XX },
	{ "connection closed before greeting", METRICS_CLOSED },
	{ "connection closed during greeting", METRICS_CLOSED },
	{ "connection closed after EHLO", METRICS_CLOSED },
	{ "read: connection reset by peer", METRICS_CLOSED },
	{ "EHLO answered 502 5.5.2 Error: command not implemented",
	    METRICS_EHLO },
	{ "timeout waiting for EHLO reply", METRICS_EHLO },
	{ "QUIT answered 500 5.5.1 Nope?", METRICS_QUIT },
	{ "timeout waiting for QUIT reply", METRICS_QUIT },
	/* The hint smtp/check.c adds wins: that is what to fix. */
	{ "EHLO answered 500 5.5.2 Error: command not recognized (does the "
	    "backend expect a PROXY header?)", METRICS_PROXY },
	{ "timeout waiting for greeting (does the backend expect a PROXY "
	    "header?)", METRICS_PROXY },
	{ "timeout sending PROXY header", METRICS_PROXY },
	{ "bad reply: SSH-2.0-OpenSSH_9.2", METRICS_OTHER },
	{ "invalid helo name", METRICS_OTHER },
	{ "", METRICS_OTHER },
};

START_TEST(test_check_reason)
{
	enum metrics_reason got = metrics_check_reason(check_vectors[_i].reason);

	ck_assert_msg(got == check_vectors[_i].want, "\"%s\": %s, want %s",
	    check_vectors[_i].reason, metrics_reason_names[got],
	    metrics_reason_names[check_vectors[_i].want]);
}
END_TEST

START_TEST(test_connect_reason_and_results)
{
	ck_assert_int_eq(metrics_connect_reason(ECONNREFUSED),
	    METRICS_CONNECT_REFUSED);
	ck_assert_int_eq(metrics_connect_reason(ETIMEDOUT),
	    METRICS_CONNECT_TIMEOUT);
	ck_assert_int_eq(metrics_connect_reason(EHOSTUNREACH),
	    METRICS_CONNECT_ERROR);
	for (int i = 0; i < METRICS_NRESULTS; i++)
		ck_assert_int_eq(metrics_result_index(metrics_result_names[i]),
		    i);
	ck_assert_int_eq(metrics_result_index("okay"), -1);
	ck_assert_int_eq(metrics_result_index(NULL), -1);
}
END_TEST

/* ------------------------------------------------------------ render */

static const char yaml[] =
	"hostname: mx.test\n"
	"workers: 2\n"
	"listeners:\n"
	"  - {name: smtp, bind: \"127.0.0.1:2525\", pool: a, "
	"max_connections: 300}\n"
	"  - {name: submission, bind: \"[::1]:2587\", pool: b}\n"
	"pools:\n"
	"  a:\n"
	"    servers:\n"
	"      - {name: mx1, address: \"127.0.0.1:10025\"}\n"
	"      - {name: mx2, address: \"127.0.0.1:10026\"}\n"
	"  b:\n"
	"    servers:\n"
	"      - {name: mx1, address: \"127.0.0.1:10027\"}\n";

static struct config *cfg;
static struct runtime rt;
static struct rt_listener listeners[2];
static struct rt_pool pools[2];
static unsigned slots_a[2] = { 0, 1 }, slots_b[1] = { 2 };
static bool shm_made;

static void
setup(void)
{
	struct cfg_diag d = { 0 };

	cfg_set_resolve(false);
	cfg = cfg_load_string(yaml, strlen(yaml), "t.yaml", &d);
	cfg_diag_free(&d);
	ck_assert_ptr_nonnull(cfg);
	/* One mapping per process (Check may run all tests in one). */
	if (!shm_made) {
		shm_create(cfg);
		ck_assert_int_eq(shm_servers_reserve(3), 0);
		shm_made = true;
	}
	ck_assert_int_eq(shm_slot_prepare(0, 3, 2), 0);
	ck_assert_int_eq(shm_slot_prepare(1, 3, 2), 0);
	for (unsigned i = 0; i < 3; i++)
		shm_server_forget(i);
	shm_listener_forget(0);
	shm_listener_forget(1);
	memset(&rt, 0, sizeof(rt));
	rt.cfg = cfg;
	rt.generation = 4;
	for (size_t i = 0; i < 2; i++) {
		listeners[i].cfg = &cfg->listeners[i];
		listeners[i].slot = (unsigned)i;
	}
	pools[0].cfg = &cfg->pools[0];
	pools[0].server_slot = slots_a;
	pools[1].cfg = &cfg->pools[1];
	pools[1].server_slot = slots_b;
	rt.listeners = listeners;
	rt.nlisteners = 2;
	rt.pools = pools;
	rt.npools = 2;
	metrics_master_start();
}

static void
teardown(void)
{
	cfg_free(cfg);
}

static char *
render(void)
{
	struct metrics_view v = { &rt, 2, 1 };
	struct evbuffer *b = evbuffer_new();
	size_t n;
	char *s;

	metrics_render(b, &v);
	n = evbuffer_get_length(b);
	s = malloc(n + 1);
	ck_assert_ptr_nonnull(s);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

/* The value of one series ("name{labels}" exactly as written), or NaN. */
static double
value(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p != NULL && *p != '\0';
	    p = strchr(p, '\n'), p = p != NULL ? p + 1 : NULL)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return NAN;
}

/*
 * The exposition as promtool's parser would judge it: every sample after
 * its family's HELP and TYPE, families contiguous and declared once, no
 * series twice, histograms cumulative with +Inf equal to _count.
 */
static void
assert_well_formed(char *text)
{
	char fam[128] = "", type[16] = "", *save = NULL, *line;
	char seen_fams[4096] = ",";
	char *series = calloc(1, strlen(text) + 2);
	char hist_key[512] = "";
	double hist_last = -1, hist_inf = -1;
	size_t nseries = 0;

	ck_assert_ptr_nonnull(series);
	series[0] = '\n';
	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		char name[128], key[512], tag[520];
		const char *sp;
		size_t nlen;

		if (strncmp(line, "# HELP ", 7) == 0) {
			ck_assert(sscanf(line + 7, "%127s", fam) == 1);
			ck_assert_msg(strlen(seen_fams) + strlen(fam) + 2 <
			    sizeof(seen_fams), "too many families");
			snprintf(tag, sizeof(tag), ",%s,", fam);
			ck_assert_msg(strstr(seen_fams, tag) == NULL,
			    "family %s declared twice", fam);
			strcat(seen_fams, fam);
			strcat(seen_fams, ",");
			type[0] = '\0';
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			char n2[128];

			ck_assert(sscanf(line + 7, "%127s %15s", n2, type) == 2);
			ck_assert_str_eq(n2, fam);
			continue;
		}
		ck_assert_msg(line[0] != '#', "stray comment: %s", line);
		ck_assert_msg(type[0] != '\0', "sample before TYPE: %s", line);
		sp = strrchr(line, ' ');
		ck_assert_ptr_nonnull(sp);
		nlen = strcspn(line, "{ ");
		ck_assert(nlen < sizeof(name));
		memcpy(name, line, nlen);
		name[nlen] = '\0';
		/* Each series once. */
		ck_assert((size_t)(sp - line) < sizeof(key));
		memcpy(key, line, (size_t)(sp - line));
		key[sp - line] = '\0';
		snprintf(tag, sizeof(tag), "\n%s\n", key);
		ck_assert_msg(strstr(series, tag) == NULL, "series twice: %s",
		    key);
		strcat(series, key);
		strcat(series, "\n");
		nseries++;
		if (strcmp(type, "histogram") != 0) {
			ck_assert_str_eq(name, fam);
			continue;
		}
		if (strcmp(name, fam) == 0)
			ck_abort_msg("histogram sample without a suffix: %s",
			    line);
		ck_assert_msg(strncmp(name, fam, strlen(fam)) == 0, "%s in %s",
		    name, fam);
		if (strcmp(name + strlen(fam), "_bucket") == 0) {
			const char *le = strstr(key, "le=\"");
			char base[512];
			double v = strtod(sp + 1, NULL);

			ck_assert_ptr_nonnull(le);
			snprintf(base, sizeof(base), "%.*s", (int)(le - key), key);
			if (strcmp(base, hist_key) != 0) {
				snprintf(hist_key, sizeof(hist_key), "%s", base);
				hist_last = -1;
			}
			ck_assert_msg(v >= hist_last, "bucket decreasing: %s",
			    line);
			hist_last = v;
			if (strncmp(le, "le=\"+Inf\"", 9) == 0)
				hist_inf = v;
		} else if (strcmp(name + strlen(fam), "_count") == 0) {
			ck_assert_msg(strtod(sp + 1, NULL) == hist_inf,
			    "_count is not +Inf: %s", line);
			hist_inf = -1;
		} else {
			ck_assert_str_eq(name + strlen(fam), "_sum");
		}
	}
	ck_assert_uint_gt(nseries, 100);
	free(series);
}

START_TEST(test_render_counts)
{
	char *t;

	/* Worker in slot 0. */
	shm_worker_attach(0);
	metrics_worker_attach();
	metrics_count_session(0, "ok", 100, 2000, 1500);	/* 1.5 ms */
	metrics_count_session(0, "ok", 10, 20, 2500000);	/* 2.5 s */
	metrics_count_session(0, "overload", 0, 60, 100);
	metrics_count_session(1, "client-limit", 0, 70, 100);
	metrics_count_session(0, "no such result", 1, 1, 1);	/* bytes only */
	metrics_count_failover(0, METRICS_CONNECT_REFUSED);
	metrics_count_connect(1, 400);				/* 0.4 ms */
	metrics_count_first_line(1, 6500000);			/* 6.5 s */
	/* Worker in slot 1: the same listener and server add up. */
	shm_worker_attach(1);
	metrics_worker_attach();
	metrics_count_session(0, "ok", 1, 2, 3);
	metrics_count_failover(0, METRICS_CONNECT_REFUSED);
	metrics_count_failover(0, METRICS_GREETING_4XX);
	/* Out of range: ignored, never written past the block. */
	metrics_count_session(99, "ok", 1, 1, 1);
	metrics_count_failover(99, METRICS_OTHER);
	/* The health process. */
	metrics_count_check(1, false, "connect: connection refused", 0.4);
	metrics_count_check(1, true, "EHLO ok", 7000.0);
	metrics_count_check(2, false, "greeting 554 5.7.1 Go away", 2.0);
	shm_admin_set(2, SHM_ADMIN_DRAIN);
	metrics_note_reload(true);
	metrics_note_reload(false);
	metrics_note_restart(false);

	t = render();
#define V(s) value(t, s)
	ck_assert_double_eq(V("smtpfront_build_info{version=\""
	    SMTPFRONT_VERSION "\"}"), 1);
	ck_assert_double_eq(V("smtpfront_generation"), 4);
	ck_assert_double_eq(V("smtpfront_workers{state=\"serving\"}"), 2);
	ck_assert_double_eq(V("smtpfront_workers{state=\"draining\"}"), 1);
	ck_assert_double_eq(V("smtpfront_reloads_total"), 1);
	ck_assert_double_eq(V("smtpfront_reload_failures_total"), 1);
	ck_assert_double_eq(V("smtpfront_config_last_reload_successful"), 0);
	ck_assert_double_eq(V("smtpfront_worker_restarts_total"), 1);
	ck_assert_double_eq(V("smtpfront_health_process_restarts_total"), 0);
	ck_assert_double_eq(V("smtpfront_listener_max_connections"
	    "{listener=\"smtp\"}"), 300);
	ck_assert_double_eq(V("smtpfront_sessions_total{listener=\"smtp\","
	    "result=\"ok\"}"), 3);
	ck_assert_double_eq(V("smtpfront_sessions_total{listener=\"smtp\","
	    "result=\"overload\"}"), 1);
	ck_assert_double_eq(V("smtpfront_sessions_total{listener=\"smtp\","
	    "result=\"untrusted-proxy\"}"), 0);
	ck_assert_double_eq(V("smtpfront_refusals_total{listener=\"smtp\","
	    "reason=\"overload\"}"), 1);
	ck_assert_double_eq(V("smtpfront_refusals_total{listener="
	    "\"submission\",reason=\"client-limit\"}"), 1);
	ck_assert_double_eq(V("smtpfront_bytes_in_total{listener=\"smtp\"}"),
	    112);
	ck_assert_double_eq(V("smtpfront_bytes_out_total{listener=\"smtp\"}"),
	    2083);
	ck_assert_double_eq(V("smtpfront_session_duration_seconds_bucket{"
	    "listener=\"smtp\",le=\"0.01\"}"), 4);
	ck_assert_double_eq(V("smtpfront_session_duration_seconds_bucket{"
	    "listener=\"smtp\",le=\"2.5\"}"), 5);
	ck_assert_double_eq(V("smtpfront_session_duration_seconds_count{"
	    "listener=\"smtp\"}"), 5);
	ck_assert_double_eq_tol(V("smtpfront_session_duration_seconds_sum{"
	    "listener=\"smtp\"}"), 2.501604, 1e-9);
	ck_assert_double_eq(V("smtpfront_gate_failovers_total{pool=\"a\","
	    "server=\"mx1\",reason=\"connect-refused\"}"), 2);
	ck_assert_double_eq(V("smtpfront_gate_failovers_total{pool=\"a\","
	    "server=\"mx1\",reason=\"greeting-4xx\"}"), 1);
	ck_assert_double_eq(V("smtpfront_gate_failovers_total{pool=\"b\","
	    "server=\"mx1\",reason=\"connect-refused\"}"), 0);
	ck_assert_double_eq(V("smtpfront_backend_connect_seconds_bucket{"
	    "pool=\"a\",server=\"mx2\",le=\"0.0005\"}"), 1);
	ck_assert_double_eq(V("smtpfront_gate_first_line_seconds_bucket{"
	    "pool=\"a\",server=\"mx2\",le=\"5\"}"), 0);
	ck_assert_double_eq(V("smtpfront_gate_first_line_seconds_bucket{"
	    "pool=\"a\",server=\"mx2\",le=\"7.5\"}"), 1);
	ck_assert_double_eq(V("smtpfront_check_failures_total{pool=\"a\","
	    "server=\"mx2\",reason=\"connect-refused\"}"), 1);
	ck_assert_double_eq(V("smtpfront_check_failures_total{pool=\"b\","
	    "server=\"mx1\",reason=\"greeting-5xx\"}"), 1);
	ck_assert_double_eq(V("smtpfront_check_duration_seconds_count{"
	    "pool=\"a\",server=\"mx2\"}"), 2);
	ck_assert_double_eq(V("smtpfront_check_duration_seconds_bucket{"
	    "pool=\"a\",server=\"mx2\",le=\"0.001\"}"), 1);
	ck_assert_double_eq(V("smtpfront_server_state{pool=\"b\",server="
	    "\"mx1\",state=\"drain\"}"), 1);
	ck_assert_double_eq(V("smtpfront_server_state{pool=\"b\",server="
	    "\"mx1\",state=\"unknown\"}"), 0);
	ck_assert_double_eq(V("smtpfront_server_state{pool=\"a\",server="
	    "\"mx1\",state=\"unknown\"}"), 1);
	assert_well_formed(t);
	free(t);

	/* Worker 0 exits: the master resets its slot; nothing is lost. */
	shm_slot_reset(0);
	t = render();
	ck_assert_double_eq(V("smtpfront_sessions_total{listener=\"smtp\","
	    "result=\"ok\"}"), 3);
	ck_assert_double_eq(V("smtpfront_gate_failovers_total{pool=\"a\","
	    "server=\"mx1\",reason=\"connect-refused\"}"), 2);
	ck_assert_double_eq(V("smtpfront_backend_connect_seconds_count{"
	    "pool=\"a\",server=\"mx2\"}"), 1);
	free(t);
	/* A respawned worker in that slot counts on from there. */
	ck_assert_int_eq(shm_slot_prepare(0, 3, 2), 0);
	shm_worker_attach(0);
	metrics_worker_attach();
	metrics_count_session(0, "ok", 0, 0, 1);
	t = render();
	ck_assert_double_eq(V("smtpfront_sessions_total{listener=\"smtp\","
	    "result=\"ok\"}"), 4);
	free(t);

	/* Slots given to another listener or server start from zero. */
	shm_slot_reset(0);
	shm_slot_reset(1);
	shm_listener_forget(0);
	shm_server_forget(1);
	t = render();
	ck_assert_double_eq(V("smtpfront_sessions_total{listener=\"smtp\","
	    "result=\"ok\"}"), 0);
	ck_assert_double_eq(V("smtpfront_sessions_total{listener="
	    "\"submission\",result=\"client-limit\"}"), 1);
	ck_assert_double_eq(V("smtpfront_check_failures_total{pool=\"a\","
	    "server=\"mx2\",reason=\"connect-refused\"}"), 0);
	ck_assert_double_eq(V("smtpfront_backend_connect_seconds_count{"
	    "pool=\"a\",server=\"mx2\"}"), 0);
	ck_assert_double_eq(V("smtpfront_gate_failovers_total{pool=\"a\","
	    "server=\"mx1\",reason=\"connect-refused\"}"), 2);
	free(t);
#undef V
}
END_TEST

/*
 * smtpfront_log_dropped_total: every worker's slot, what reaped workers
 * had counted, the master's and the health process's own words; a
 * process's log counts in its word once attached.
 */
START_TEST(test_render_log_dropped)
{
	uint64_t *w, before = metrics_log_dropped();
	size_t len = 0;
	char *t;

	shm_worker_attach(0);
	w = shm_slot_mine(SHM_SLOT_PROCESS_METRICS, &len);
	ck_assert_ptr_nonnull(w);
	ck_assert_uint_ge(len, METRICS_PROCESS_WORDS * sizeof(uint64_t));
	w[METRICS_PW_LOG_DROPPED] += 5;
	shm_worker_attach(1);
	w = shm_slot_mine(SHM_SLOT_PROCESS_METRICS, &len);
	w[METRICS_PW_LOG_DROPPED] += 7;
	/* Worker 1 exits and is respawned: its 7 are kept. */
	shm_slot_reset(1);
	ck_assert_uint_eq(w[METRICS_PW_LOG_DROPPED], 0);
	w[METRICS_PW_LOG_DROPPED] += 1;
	shm_process_counters(SHM_PROCESS_MASTER)[METRICS_PW_LOG_DROPPED] += 2;
	shm_process_counters(SHM_PROCESS_HEALTH)[METRICS_PW_LOG_DROPPED] += 3;
	ck_assert_uint_eq(metrics_log_dropped(), before + 18);
	t = render();
	ck_assert_double_eq(value(t, "smtpfront_log_dropped_total"),
	    (double)(before + 18));
	ck_assert_ptr_nonnull(strstr(t, "# TYPE smtpfront_log_dropped_total "
	    "counter\n"));
	free(t);
	/* The log of this process counts in the master's word from now on,
	 * what it had dropped before added. */
	w = shm_process_counters(SHM_PROCESS_MASTER);
	before = w[METRICS_PW_LOG_DROPPED];
	metrics_master_attach();
	ck_assert_uint_eq(log_dropped(), w[METRICS_PW_LOG_DROPPED]);
	ck_assert_uint_ge(w[METRICS_PW_LOG_DROPPED], before);
	log_count_drops_in(NULL);
}
END_TEST

static Suite *
metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc;

	tc = tcase_create("metrics_check_reason");
	tcase_add_loop_test(tc, test_check_reason, 0,
	    (int)(sizeof(check_vectors) / sizeof(check_vectors[0])));
	tcase_add_test(tc, test_connect_reason_and_results);
	suite_add_tcase(s, tc);
	tc = tcase_create("metrics_render");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_render_counts);
	tcase_add_test(tc, test_render_log_dropped);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(metrics_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
