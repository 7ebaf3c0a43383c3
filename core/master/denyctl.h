/* SPDX-License-Identifier: MIT */
/*
 * denyctl: the master's side of the runtime deny entries: the control
 * commands (deny add|del|list), their expiry, and the state file in
 * state_directory (read at start, written within a second of a change and
 * at exit). The entries themselves live in core/deny.c's shared table.
 */
#ifndef SMTPFRONT_DENYCTL_H
#define SMTPFRONT_DENYCTL_H

#include <sys/types.h>

#include <event2/event.h>

#include "config/config.h"
#include "core/runtime.h"

struct evbuffer;

/* Start: read the state file of cfg's state_directory, arm the timers. */
void denyctl_start(struct event_base *base, const struct config *cfg);
/* A reload: the state_directory of the new config (written there next). */
void denyctl_set_config(const struct config *cfg);
/* Exit: write what changed; stop the timers. */
void denyctl_stop(void);
/* `deny add|del|list ...` (argv[0] is "deny"): the JSON answer in out;
 * uid and pid of the peer for the log; rt: the listeners whose static
 * deny lists `deny list` shows too. */
void denyctl_command(struct evbuffer *out, const struct runtime *rt,
    int argc, char **argv, uid_t uid, pid_t pid);
/* `status`: the "deny" member (without its key). */
void denyctl_status_json(struct evbuffer *out);

#endif
