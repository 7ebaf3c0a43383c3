/* SPDX-License-Identifier: MIT */
/*
 * master_int: what the master's files share: its state (one per process),
 * its children and the steps of a reload. Not for use outside core/master.
 */
#ifndef SMTPFRONT_MASTER_INT_H
#define SMTPFRONT_MASTER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>

#include "config/config.h"
#include "core/master/control.h"
#include "core/master/metrics_http.h"
#include "core/runtime.h"
#include "core/sandbox.h"


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
extern const char *const child_kind_names[];

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
	bool upgrade;			/* started by an upgrade's new image */
	unsigned generation;		/* the one being started */
	char *source;			/* the config's text, for its runtime */
	size_t source_len;
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
	char **argv;			/* as started: the upgrade execs with it */
	char exe[4096];			/* binary an upgrade runs by default */
	char binary[4096];		/* binary this image runs */
};

extern struct master master;

/* Each child, workers and the health process. */
#define MASTER_FOREACH_CHILD(m, c)					\
	for (size_t _i = 0; _i <= (m)->nworkers; _i++)			\
		if (((c) = _i == (m)->nworkers ? &(m)->health :		\
		    (m)->workers[_i]) != NULL)

/* master.c */
void master_init(struct master *m);
void master_setup_signals(struct master *m);
void master_setup_events(struct master *m);
void master_setup_control(struct master *m, int fd);
int master_loop(struct master *m);
void master_lines_add(char *buf, size_t cap, const char *line);
void master_log_lines(const char *prefix, const char *text);
void master_timer_add(struct event *ev, unsigned ms);

/* children.c */
void master_chan_close(struct child *c);
bool master_chan_read(struct child *c);
int master_spawn(struct master *m, struct child *c, struct runtime *rt);
void master_worker_free(struct master *m, struct child *c);
void master_drain_child(struct master *m, struct child *c, int64_t deadline);
int64_t master_drain_deadline(const struct master *m);
void master_respawn(struct master *m, struct child *c);
void master_on_spawn(evutil_socket_t fd, short what, void *arg);
int master_start_workers(struct master *m, struct runtime *rt, unsigned n);
void master_on_respawn(evutil_socket_t fd, short what, void *arg);
bool master_children_alive(const struct master *m);
void master_reap(struct master *m);
void master_kill_all(struct master *m, int sig);
void master_on_drain_timer(evutil_socket_t fd, short what, void *arg);

/* generation.c */
void master_rt_add(struct master *m, struct runtime *rt);
void master_rt_gc(struct master *m, struct runtime *rt);
void master_log_ready(const struct master *m);
void master_count_ready(const struct master *m, const struct runtime *rt,
    unsigned *ready, unsigned *running, unsigned *pending);
void master_check_ready(struct master *m);
void master_on_start_timer(evutil_socket_t fd, short what, void *arg);
void master_reload_error(struct master *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void master_reload_warning(struct master *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void master_reload_diag(struct master *m, const struct cfg_diag *diag);
void master_reload_fail(struct master *m);
int master_reload_begin(struct master *m, const char *who, char *err,
    size_t cap);
void master_on_reload_timer(evutil_socket_t fd, short what, void *arg);
void master_keep_fixed(struct master *m, const struct config *old,
    struct config *cfg);
void master_reload_start_workers(struct master *m, struct config *cfg);
/* The config file's text (NUL-terminated; *len without the NUL), or NULL. */
char *master_read_source(const char *path, size_t *len);
/* The reload that was started is over: answer, as a reload or upgrade. */
void master_reload_answer(struct master *m, unsigned generation);

/* fdstore.c */
/* Before the first runtime: take the sockets systemd passed. */
void master_listen_fds(void);
/* A socket handed over that no bind wants: out of systemd's store too
 * (else it would go on queueing connections nobody serves). */
void master_fdstore_forget(const char *name);
/* rt is current: send state (READY=1...) with its listening sockets for
 * systemd's store (all of them, or those it bound itself). */
void master_notify_ready(const struct runtime *rt, const char *state,
    bool all);
/* After runtime_commit(rt, old): drop from the store what old still has. */
void master_fdstore_remove(const struct runtime *old);

/* upgrade.c */
/* Upgrade to binary (NULL: m->exe). Does not return when the exec
 * works; -1 with the reason in err when refused or when it failed. */
int master_upgrade_begin(struct master *m, const char *who,
    const char *binary, char *err, size_t cap);
void master_on_channel(evutil_socket_t fd, short what, void *arg);

/* stop.c */
void master_on_kill_timer(evutil_socket_t fd, short what, void *arg);
void master_stop(struct master *m, int signo);

#endif
