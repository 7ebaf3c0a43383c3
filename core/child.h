/* SPDX-License-Identifier: MIT */
/*
 * child: what every forked child (worker or health process) does the same
 * way: drop privileges, get a fresh event base, and turn SIGTERM/SIGINT and
 * the master's pipe closing into one "stop" callback.
 */
#ifndef SMTPFRONT_CHILD_H
#define SMTPFRONT_CHILD_H

#include <stddef.h>

#include <event2/event.h>

#include "config/config.h"

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
struct event_base *child_event_base(void);
int child_events_init(struct child_events *ce, struct event_base *base,
    int parent_fd, void (*on_stop)(void *), void *arg)
    __attribute__((warn_unused_result));
void child_events_free(struct child_events *ce);

#endif
