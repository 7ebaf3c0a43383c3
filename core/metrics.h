/* SPDX-License-Identifier: MIT */
/*
 * metrics: what smtpfront counts and how it is shown. Workers count their
 * sessions (by listener: results, bytes, duration) and their attempts (by
 * server: failovers by reason, connect time, time to the first line) in
 * regions of their own worker slot; the health process counts checks (by
 * server: failures by reason, duration) next to the health records it
 * alone writes; the master counts reloads and restarts in its own memory.
 * The master renders all of it as Prometheus families, summing the worker
 * slots and what exited workers had counted (shm keeps that), so counters
 * survive worker restarts and reloads and start from zero with smtpfront.
 */
#ifndef SMTPFRONT_METRICS_H
#define SMTPFRONT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct runtime;

/* Why an attempt or a check failed, in classes of bounded cardinality. */
enum metrics_reason {
	METRICS_CONNECT_REFUSED,
	METRICS_CONNECT_TIMEOUT,
	METRICS_CONNECT_ERROR,		/* unreachable, reset, ... */
	METRICS_CLOSED,			/* closed or reset before the dialog ended */
	METRICS_GREETING_TIMEOUT,
	METRICS_GREETING_4XX,		/* a 4xx greeting (gate: 421 4.3.x) */
	METRICS_GREETING_5XX,
	METRICS_PROXY,			/* the backend seems not to expect the header */
	METRICS_EHLO,			/* EHLO refused or not answered */
	METRICS_QUIT,			/* QUIT refused or not answered */
	METRICS_OTHER,
	METRICS_NREASONS
};
extern const char *const metrics_reason_names[];

/* The results of SPEC.md "Session log", in its order. */
enum metrics_result {
	METRICS_OK,
	METRICS_NO_BACKEND,
	METRICS_OVERLOAD,
	METRICS_CLIENT_LIMIT,
	METRICS_CLIENT_RATE,
	METRICS_DENIED,
	METRICS_SHUTDOWN,
	METRICS_CLIENT_TIMEOUT,
	METRICS_SERVER_TIMEOUT,
	METRICS_CLIENT_CLOSED,
	METRICS_SERVER_CLOSED,
	METRICS_GREETING_FAILED,
	METRICS_BAD_PROXY_HEADER,
	METRICS_UNTRUSTED_PROXY,
	METRICS_NRESULTS
};
extern const char *const metrics_result_names[];
/* The index of a result name, or -1. */
int metrics_result_index(const char *result);

/*
 * A histogram is stored as METRICS_HIST_SLOTS bucket counts (not
 * cumulative; the one after the last bound is +Inf) and a sum in
 * microseconds: METRICS_HIST_WORDS 64-bit words.
 */
#define METRICS_HIST_SLOTS	16
#define METRICS_HIST_WORDS	(METRICS_HIST_SLOTS + 1)

/* Words of each listener's block in a worker slot. */
#define METRICS_LW_RESULTS	0
#define METRICS_LW_BYTES_IN	(METRICS_LW_RESULTS + METRICS_NRESULTS)
#define METRICS_LW_BYTES_OUT	(METRICS_LW_BYTES_IN + 1)
#define METRICS_LW_DURATION	(METRICS_LW_BYTES_OUT + 1)
#define METRICS_LISTENER_WORDS	(METRICS_LW_DURATION + METRICS_HIST_WORDS)
/* Words of each server's block in a worker slot. */
#define METRICS_SW_FAILOVERS	0
#define METRICS_SW_CONNECT	(METRICS_SW_FAILOVERS + METRICS_NREASONS)
#define METRICS_SW_FIRST_LINE	(METRICS_SW_CONNECT + METRICS_HIST_WORDS)
#define METRICS_SERVER_WORDS	(METRICS_SW_FIRST_LINE + METRICS_HIST_WORDS)
/* Words of each server's check counters (written by the health process). */
#define METRICS_CW_FAILURES	0
#define METRICS_CW_DURATION	(METRICS_CW_FAILURES + METRICS_NREASONS)
#define METRICS_CHECK_WORDS	(METRICS_CW_DURATION + METRICS_HIST_WORDS)

/* Words of the counters a process keeps about itself: a worker's in its
 * slot (SHM_SLOT_PROCESS_METRICS), the master's and the health process's
 * in shm_process_counters(). */
#define METRICS_PW_LOG_DROPPED	0	/* log lines dropped (core/log.h) */
#define METRICS_PROCESS_WORDS	1

/* ---- worker side (after shm_worker_attach) ---- */
/* Also counts the worker's dropped log lines in its slot. */
void metrics_worker_attach(void);
/* A session ended with `result` (its log line's). */
void metrics_count_session(unsigned listener, const char *result,
    uint64_t bytes_in, uint64_t bytes_out, int64_t duration_us);
/* An attempt on `server` failed at the gate. */
void metrics_count_failover(unsigned server, enum metrics_reason r);
/* A connect completed (the PROXY header went out) after `us`. */
void metrics_count_connect(unsigned server, int64_t us);
/* The backend's first line arrived `us` after the attempt started. */
void metrics_count_first_line(unsigned server, int64_t us);
/* The class of a failed connect(2). */
enum metrics_reason metrics_connect_reason(int err);

/* ---- health process ---- */
/* Count the health process's dropped log lines in shared memory. */
void metrics_health_attach(void);
/* The class of a check's reason text (smtp/check.c's words). */
enum metrics_reason metrics_check_reason(const char *reason);
void metrics_count_check(unsigned server, bool ok, const char *reason,
    double elapsed_ms);

/* ---- master ---- */
/* Start of the master (once): the start time and zeroed counters. */
void metrics_master_start(void);
/* After shm_create(): count the master's dropped log lines there. */
void metrics_master_attach(void);
/* Log lines dropped by every process since start. */
uint64_t metrics_log_dropped(void);
void metrics_note_reload(bool ok);
void metrics_note_restart(bool health_process);
/* A child died of SIGSYS under its sandbox. */
void metrics_note_sandbox_kill(void);
/* A binary upgrade: done (a new generation from the new image), failed
 * (the new image could not start one), refused (the new image could not
 * read the state; the previous one took it back) or not run (exec failed). */
enum metrics_upgrade {
	METRICS_UPGRADE_OK,
	METRICS_UPGRADE_FAILED,
	METRICS_UPGRADE_REFUSED,
	METRICS_UPGRADE_EXEC_FAILED,
	METRICS_NUPGRADE
};
void metrics_note_upgrade(enum metrics_upgrade result);
/* The master's own counters, handed across an upgrade's exec. */
struct metrics_master_state {
	double start_time;
	uint64_t reloads, reload_failures;
	uint64_t worker_restarts, health_restarts;
	uint64_t upgrades[METRICS_NUPGRADE];
	uint64_t sandbox_kills;
	bool last_reload_ok;
};
void metrics_master_save(struct metrics_master_state *out);
void metrics_master_restore(const struct metrics_master_state *in);

struct metrics_view {
	const struct runtime *rt;	/* listeners and servers shown */
	unsigned workers;		/* running and serving */
	unsigned workers_draining;
};
/* The whole exposition of what `v` shows. */
void metrics_render(struct evbuffer *out, const struct metrics_view *v);
/* Sessions of listener slot `listener` by result, since start. */
void metrics_listener_results(unsigned listener,
    uint64_t out[METRICS_NRESULTS]);

#endif
