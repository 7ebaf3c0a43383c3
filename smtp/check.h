/* SPDX-License-Identifier: MIT */
/*
 * One SMTP health check of one server, as a libevent state machine:
 * connect, optional PROXY header, the whole greeting, EHLO, QUIT, close with
 * FIN. It knows nothing of processes, schedules or shared state.
 */
#ifndef SMTPFRONT_CHECK_H
#define SMTPFRONT_CHECK_H

#include <stdbool.h>
#include <sys/socket.h>

struct event_base;
struct check;

enum check_proxy {
	CHECK_PROXY_NONE,
	CHECK_PROXY_V1,		/* TCP4/TCP6 line with the check's own endpoints */
	CHECK_PROXY_V2,		/* LOCAL */
};

struct check_params {
	const struct sockaddr *addr;	/* the server; copied by check_start */
	socklen_t addrlen;
	enum check_proxy proxy;
	bool dialog;		/* false: connect and header only ("connect") */
	const char *helo;	/* EHLO argument; copied */
	unsigned timeout_ms;	/* bounds the whole check */
};

/*
 * Called exactly once per started check, always from the event loop (never
 * from inside check_start). `reason` is human text ("EHLO ok", "connect:
 * connection refused", ...) valid only during the call. The callback may
 * call check_free() on its check.
 */
typedef void (*check_done_cb)(bool ok, const char *reason, double elapsed_ms,
    void *arg);

/*
 * Start a check. Every failure, even an immediate one, is reported through
 * `cb`; NULL is returned only when memory or the event base fails (then
 * `cb` is never called).
 */
struct check *check_start(struct event_base *base,
    const struct check_params *p, check_done_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* Cancel (no callback follows) or release a finished check. NULL is a no-op. */
void check_free(struct check *c);

#endif
