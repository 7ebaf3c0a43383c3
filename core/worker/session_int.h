/* SPDX-License-Identifier: MIT */
/*
 * The inside of a session, shared by the files that make one up and by
 * nobody else: session.c (the phases and their deadlines, limits, every
 * ending, the log line), upstream.c (the PROXY header an upstream
 * balancer sends first, on accept_proxy listeners), gate.c (server
 * choice, connect, PROXY header, greeting gate), relay.c (the pump: I/O,
 * backpressure, half-close, inactivity) and pipepool.c (pipes for
 * splice). Ownership: the session owns both sockets, whatever is queued or
 * piped for them, and its last_error; only session_free() frees it, called
 * from session_finalize() alone.
 */
#ifndef SMTPFRONT_SESSION_INT_H
#define SMTPFRONT_SESSION_INT_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <stdbool.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "core/worker/admission.h"
#include "core/worker/session.h"
#include "smtp/dialog.h"
#include "smtp/verdict.h"

/* Early client bytes held before the backend's first line (SPEC.md). */
#define SESSION_HOLD_MAX	4096
/* How long a closing client may take to read our 421 and hang up, and
 * how much of its input is drained meanwhile (SPEC.md "Bounds"). */
#define SESSION_LINGER_MS	10000
#define SESSION_LINGER_READ	4096
/*
 * SO_SNDBUF asked for client sockets and SO_RCVBUF for server sockets,
 * the directions only replies take; the kernel doubles both (128 KiB and
 * 64 KiB). A client send buffer under two of loopback's 64 KiB segments
 * stalls a slow reader on zero-window probes.
 */
#define SESSION_CLIENT_SNDBUF	(64 * 1024)
#define SESSION_SERVER_RCVBUF	(32 * 1024)
/* Bytes per read(2): big reads make the cost per GB low. */
#define SESSION_READ_MAX	(256 * 1024)
/* Servers tracked in the inline `tried` bitmask; bigger pools allocate. */
#define SESSION_TRIED_BITS	64
/* Pipes a worker may hold open for splice(2) (SESSION_PIPE_FDS each 2). */
#define SESSION_PIPES_MAX	(SESSION_PIPE_FDS / 2)

enum session_state {
	SESSION_HEADER,		/* accept_proxy: reading the upstream header */
	SESSION_CONNECTING,	/* an attempt in flight, client bytes held */
	SESSION_GATE,		/* header sent, waiting for the first line */
	SESSION_RELAY,		/* bytes both ways */
	SESSION_CLOSING,	/* a 421 is flushed, then the client drained */
};

union session_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* One socket of a session. */
struct session_side {
	struct event ev;		/* valid while `armed` != 0 */
	struct session_side *peer;	/* the other socket of the session */
	struct evbuffer *out;		/* bytes for this socket, or NULL */
	int64_t active_us;		/* last byte read from it or taken by it */
	int fd;				/* -1: none */
	int pipe[2];			/* spliced bytes for it, or -1 */
	uint32_t piped;			/* bytes in `pipe` (after `out`) */
	unsigned timeout_ms;		/* inactivity timeout, 0: none */
	unsigned outq;			/* its kernel send queue at its last look */
	unsigned peer_outq;		/* the peer's, at that same look */
	short armed;			/* events `ev` was added with */
	short err;			/* its socket failed with this errno */
	bool retime;			/* timeout_ms changed since then */
	bool eof;			/* read 0: the peer sent its FIN */
	bool shut;			/* we sent our FIN */
	bool paused;			/* not read: the other side is full */
	bool stalled;			/* not read: it does not read replies */
	bool bulk;			/* its last read was big */
};

/*
 * What only the phases before the relay need, apart so that an idle
 * relayed session does not carry it: allocated with the session, freed
 * when the gate opens or the session closes (after its log line: `dump`
 * is in it).
 */
struct session_pre {
	union session_addr local;	/* where the client connected to */
	struct evbuffer *hold;		/* early client bytes (gate) */
	uint8_t *hdr;			/* upstream header so far (HEADER only) */
	char *dump;			/* escaped first bytes of a bad header */
	bool *tried_big;		/* pools beyond SESSION_TRIED_BITS */
	uint64_t tried;			/* servers attempted, a bit each */
	int64_t t_connect;		/* the current attempt's start */
	unsigned short hdr_len;		/* bytes in `hdr` */
	bool proxy_local;		/* upstream header carried no usable
					 * client (LOCAL) */
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct session_env *env;
	const struct rt_listener *listener;
	struct session_side client;
	struct session_side server;
	struct session_pre *pre;	/* NULL once relaying or closing */
	char *last_error;		/* NULL when none */
	const char *result;		/* NULL until decided */
	int64_t t_start;
	int64_t deadline_us;		/* the phase's absolute end, 0: none */
	uint64_t bytes_in;		/* client -> server */
	uint64_t bytes_out;		/* server -> client */
	union session_addr peer;
	struct dialog dialog;
	float connect_ms;
	short server_idx;		/* within the pool; -1 = none yet */
	unsigned short attempts;
	unsigned short gate_failures;	/* attempts connected but not greeted */
	unsigned short linger_read;	/* CLOSING: client bytes drained */
	short first_err;		/* who left first did with this error */
	uint32_t sid;			/* this worker's session number */
	struct admit_hold admit;	/* its counts against the limits */
	/* Bit fields: every idle session carries them. */
	uint16_t state : 3;		/* enum session_state */
	uint16_t proxy_in : 2;		/* upstream header read: 1 or 2, 0: none */
	uint16_t first_gone : 2;	/* enum verdict_who: who left first */
	uint16_t first_clean : 1;	/* ... and did it with a FIN */
	uint16_t client_quiet : 1;	/* nothing open when the client left */
	uint16_t client_in_message : 1;	/* ... or a message was */
	uint16_t server_counted : 1;	/* holds +1 in shm server_active */
	uint16_t logged : 1;
};

/* The session's pool (its listener's). */
static inline const struct rt_pool *
session_pool(const struct session *s)
{
	return &s->env->rt->pools[s->listener->cfg->pool];
}

/*
 * Who calls whom: session.c owns the phases (a table of handlers per
 * phase, and session_goto(), the one place the phase changes) and every
 * ending (session_finalize()). It calls upstream.c, gate.c and relay.c,
 * which do their part on the sockets and report back by return codes and
 * by flags on the sides (`eof`, `shut`, `err`); none of them calls back
 * into session.c, changes the phase or ends a session.
 */

/* session.c */
extern char session_scratch[SESSION_READ_MAX];
void session_add_error(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), nonnull(2)));
/*
 * The one deadline helper: the current phase ends `ms` after `from_us`
 * (0 ms: no deadline), whatever bytes trickle in meanwhile. The side that
 * carries it (session_deadline_side) has its timer set from it.
 */
void session_deadline(struct session *s, int64_t from_us, unsigned ms);
/* The session's id in log lines ("sid="): the worker's pid and the
 * session's number in it, in hex; valid until the next call. */
const char *session_sid(const struct session *s);
struct session_side *session_deadline_side(const struct session *s);
unsigned session_server_slot(const struct session *s);

/* upstream.c */
enum upstream_status {
	UPSTREAM_MORE,		/* no whole header yet: wait */
	UPSTREAM_DONE,		/* read: the session's client is its client */
	UPSTREAM_GONE,		/* closed before a byte of it (err in *err) */
	UPSTREAM_BAD,		/* malformed: explained in last_error */
	UPSTREAM_NOMEM,
};
/* Is `sa` inside one of the listener's trusted_proxies? */
bool upstream_trusted(const struct cfg_listener *lc,
    const struct sockaddr *sa);
/* Untrusted: show what it sent already in the log, without waiting. */
void upstream_peek(struct session *s);
int upstream_begin(struct session *s) __attribute__((warn_unused_result));
enum upstream_status upstream_read(struct session *s, int *err);
/* proxy_timeout passed: explain it. */
void upstream_timeout(struct session *s);

/* gate.c */
enum gate_status {
	GATE_WAIT,		/* in flight: wait for events */
	GATE_READY,		/* connected, PROXY header sent */
	GATE_OPEN,		/* the first line is in: relay it */
	GATE_FAILED,		/* this attempt failed (counted, explained) */
	GATE_NONE,		/* nothing (more) to try: no-backend */
	GATE_NOFD,		/* out of descriptors: overload */
};
/* Pick the next server and connect to it. */
enum gate_status gate_connect(struct session *s);
/* The connect may be done (`eager`: not known yet): send the header. */
enum gate_status gate_connected(struct session *s, bool eager);
/* The server is readable or writable before its first line was judged;
 * GATE_OPEN leaves that line's read in *p, *n (or queued). */
enum gate_status gate_on_server(struct session *s, short what,
    const char **p, size_t *n);
/* This attempt timed out (connecting or awaiting the greeting). */
void gate_timeout(struct session *s);
/* Early client bytes, held until the gate opens; -1: the client is gone
 * (c->err, or c->eof for a FIN). */
int gate_hold(struct session *s);
void gate_drop_server(struct session *s);

/* relay.c: the pump */
void relay_set_timeout(struct session_side *d, unsigned ms);
void relay_side_init(struct session_side *d, int fd, unsigned timeout_ms);
void relay_side_close(struct session_side *d);
ssize_t relay_recv(int fd, void *buf, size_t len);
bool relay_again(void);
int relay_queue(struct session_side *d, const void *p, size_t len)
    __attribute__((warn_unused_result));
int relay_put(struct session_side *d, const void *p, size_t len)
    __attribute__((warn_unused_result));
int relay_flush(struct session_side *d)
    __attribute__((warn_unused_result));
/* The gate opened: the greeting (what was queued toward the client, then
 * p[0..n)) and the held client bytes go out. -1: a side's `err` is set. */
int relay_begin(struct session *s, const char *p, size_t n);
/*
 * A side's socket is ready (`what`): move bytes both ways through it and
 * pass FINs on. 0: go on; -1: a side failed (its `err` is set); 1: both
 * directions are done. A FIN read raises that side's `eof`.
 */
int relay_pump(struct session *s, struct session_side *d, short what);
/* Has `d` really been idle its whole timeout? If not, d->retime. */
bool relay_expired(struct session *s, struct session_side *d);
/* `d` timed out: the side to blame (the other when it sits on bytes). */
struct session_side *relay_blame(struct session *s, struct session_side *d);
int64_t relay_now_us(void);

/* pipepool.c: pipes lent to a side while spliced bytes sit in them */
int pipepool_get(struct session_side *d);
void pipepool_put(struct session_side *d);
void pipepool_disable(void);

#endif
