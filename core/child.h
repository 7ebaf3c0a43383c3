/* SPDX-License-Identifier: MIT */
/*
 * child: what every forked child (worker or health process) does the same
 * way: drop privileges, get a fresh event base, turn SIGTERM/SIGINT and the
 * master's end of its channel closing into one "stop" callback, and tell
 * the master when it is accepting.
 *
 * The channel is a socketpair per child: the master watches its end for
 * the child's messages (one byte 'R': "ready"), the child watches its own
 * for EOF, which means the master is gone.
 */
#ifndef SMTPFRONT_CHILD_H
#define SMTPFRONT_CHILD_H

#include <stddef.h>

#include <event2/event.h>

#include "config/config.h"
#include "core/sandbox.h"

struct child_events {
	struct event *sig_ev;
	struct event *parent_ev;
	int sigfd;
	void (*on_stop)(void *arg);
	void *arg;
};

/* Close every descriptor above stderr that is not in keep[]: a child
 * holds only what it uses (not the master's control connections, event
 * base or signalfd, whatever state they are in). */
void child_close_fds(const int *keep, size_t nkeep);
/* Switch to the configured user/group (no change when already that user). */
int child_drop_privileges(const struct config *cfg)
    __attribute__((warn_unused_result));
/*
 * Put the role's seccomp filter on (sandbox: true, and a build and run that
 * can: sandbox_unavailable()); parent_fd is the channel a forbidden call is
 * reported on. From here on no file can be opened: what this module reads
 * from files (the test hook of child_ready()) is read first. -1 (logged)
 * when the filter could not be installed: the child must not serve.
 */
int child_sandbox(const struct config *cfg, enum sandbox_role role,
    int parent_fd) __attribute__((warn_unused_result));
struct event_base *child_event_base(void);
/* parent_fd is the child's end of its channel. */
int child_events_init(struct child_events *ce, struct event_base *base,
    int parent_fd, void (*on_stop)(void *), void *arg)
    __attribute__((warn_unused_result));
void child_events_free(struct child_events *ce);
/*
 * A worker calls this once it watches its listening sockets, right before
 * its event loop: the master retires the previous generation (and answers
 * a reload) only when every new worker has said so.
 *
 * Test only: when $SMTPFRONT_TEST_WORKER_START names a file that exists,
 * its first word decides instead: "exit" makes the worker exit with status
 * 1 here, "config" with the status of a child that failed on its
 * configuration (never respawned), "stall" makes it run without ever
 * saying it is ready. The variable is read only when set; nothing else
 * looks at it.
 */
void child_ready(void);

/* Exit status of a child that failed on its configuration: never respawned. */
#define CHILD_EXIT_CONFIG 78

/* The message a child sends on its channel when it is accepting. */
#define CHILD_MSG_READY 'R'
/* Sent by a child the sandbox kills, followed by a struct sandbox_report. */
#define CHILD_MSG_SANDBOX 'S'

#endif
