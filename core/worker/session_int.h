/* SPDX-License-Identifier: MIT */
/*
 * The inside of a session, shared by the files that make one up and by
 * nobody else: session.c (lifecycle, limits, the verdict and the log
 * line), upstream.c (the PROXY header an upstream balancer sends first,
 * on accept_proxy listeners), gate.c (server choice, connect, PROXY
 * header, greeting gate), relay.c (the two sockets: I/O, backpressure,
 * half-close, inactivity) and pipepool.c (pipes for splice). Ownership: the session owns both sockets,
 * whatever is queued or piped for them, and its last_error; only
 * session_free() frees it, and a function that ended the session returns
 * -1 (or nothing) and its caller returns at once.
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

#include "core/worker/clients.h"
#include "core/worker/session.h"
#include "smtp/dialog.h"

/* Early client bytes held before the backend's first line (SPEC.md). */
#define SESSION_HOLD_MAX	4096
/* How long a closing client may take to read our 421 and hang up, and
 * how much of its input is drained meanwhile (SPEC.md "Bounds"). */
#define SESSION_LINGER_MS	10000
#define SESSION_LINGER_READ	4096
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

/* Why a session ends; session_end() turns it into `result=`. */
enum session_cause {
	SESSION_END_CLIENT_GONE,	/* client FIN, reset or socket error */
	SESSION_END_SERVER_GONE,	/* server FIN, reset or socket error */
	SESSION_END_FINISHED,		/* both directions done */
	SESSION_END_CLIENT_TIMEOUT,
	SESSION_END_SERVER_TIMEOUT,
	SESSION_END_NO_BACKEND,		/* every attempt failed, or none usable */
	SESSION_END_OVERLOAD,		/* max_connections or no descriptor */
	SESSION_END_CLIENT_LIMIT,	/* max_connections_per_client */
	SESSION_END_SHUTDOWN,		/* shutdown_timeout expired */
	SESSION_END_BAD_PROXY,		/* upstream header malformed or late */
	SESSION_END_UNTRUSTED,		/* accept_proxy, source not trusted */
};

enum session_who {
	SESSION_NOBODY,
	SESSION_CLIENT,
	SESSION_SERVER,
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
	size_t piped;			/* bytes in `pipe` (after `out`) */
	unsigned timeout_ms;		/* inactivity timeout, 0: none */
	unsigned outq;			/* its kernel send queue at its last look */
	unsigned peer_outq;		/* the peer's, at that same look */
	short armed;			/* events `ev` was added with */
	bool retime;			/* timeout_ms changed since then */
	bool eof;			/* read 0: the peer sent its FIN */
	bool shut;			/* we sent our FIN */
	bool paused;			/* not read: the other side is full */
	bool bulk;			/* its last read was big */
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct session_env *env;
	const struct rt_listener *listener;
	const struct rt_pool *pool;
	struct session_side client;
	struct session_side server;
	struct evbuffer *hold;		/* early client bytes (gate) */
	uint8_t *hdr;			/* upstream header so far (HEADER only) */
	char *last_error;		/* NULL when none */
	char *dump;			/* escaped first bytes of a bad header */
	const char *result;		/* NULL until decided */
	bool *tried_big;		/* pools beyond SESSION_TRIED_BITS */
	uint64_t tried;			/* servers attempted, a bit each */
	int64_t t_start;
	int64_t t_connect;
	int64_t deadline_us;		/* the phase's absolute end, 0: none */
	uint64_t bytes_in;		/* client -> server */
	uint64_t bytes_out;		/* server -> client */
	union session_addr peer;
	union session_addr local;
	struct dialog dialog;
	float connect_ms;
	int server_idx;			/* within the pool; -1 = none yet */
	unsigned short attempts;
	unsigned short gate_failures;	/* attempts connected but not greeted */
	unsigned short hdr_len;		/* bytes in `hdr` */
	unsigned short linger_read;	/* CLOSING: client bytes drained */
	unsigned char proxy_in;		/* upstream header read: 1 or 2, 0: none */
	bool proxy_local;		/* ... carried no usable client (LOCAL) */
	unsigned char state;		/* enum session_state */
	unsigned char first_gone;	/* enum session_who: who left first */
	bool first_clean;		/* ... and did it with a FIN */
	int first_err;			/* ... or with this error */
	bool client_quiet;		/* nothing open when the client left */
	bool client_in_message;		/* ... or a message was */
	bool server_counted;		/* holds +1 in shm server_active */
	bool listener_counted;		/* holds +1 in shm listener_active */
	bool client_counted;		/* holds +1 in the per-client table */
	bool logged;
};

/* session.c */
extern char session_scratch[SESSION_READ_MAX];
void session_add_error(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void session_end(struct session *s, enum session_cause cause, int err);
/* A side went away (EOF when err is 0): remember who was first. */
void session_side_gone(struct session *s, struct session_side *d, int err);
void session_on_closing(struct session *s, short what);
/*
 * The one deadline helper: the current phase ends `ms` after `from_us`
 * (0 ms: no deadline), whatever bytes trickle in meanwhile. The side that
 * carries it (session_deadline_side) has its timer set from it.
 */
void session_deadline(struct session *s, int64_t from_us, unsigned ms);
struct session_side *session_deadline_side(struct session *s);
bool session_deadline_passed(const struct session *s);
void session_client_key(const struct session *s, struct clients_key *k);
unsigned session_server_slot(const struct session *s);
/* Admission after the upstream header; -1 when the session was refused. */
int session_admit(struct session *s) __attribute__((warn_unused_result));

/* upstream.c */
/* Is `sa` inside one of the listener's trusted_proxies? */
bool upstream_trusted(const struct cfg_listener *lc,
    const struct sockaddr *sa);
/* A new session on an accept_proxy listener: check the source, then read
 * the header (SESSION_HEADER) before anything is connected or said. */
void upstream_start(struct session *s);
void upstream_on_client(struct session *s, short what);

/* gate.c */
void gate_try_next(struct session *s);
void gate_on_server(struct session *s, short what);
void gate_on_client(struct session *s, short what);
void gate_drop_server(struct session *s);

/* relay.c */
void relay_update(struct session *s);
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
int relay_begin(struct session *s, const char *p, size_t n);
bool relay_expired(struct session *s, struct session_side *d);
void relay_on_client(struct session *s, short what);
void relay_on_server(struct session *s, short what);
int64_t relay_now_us(void);

/* pipepool.c: pipes lent to a side while spliced bytes sit in them */
int pipepool_get(struct session_side *d);
void pipepool_put(struct session_side *d);
void pipepool_disable(void);

#endif
