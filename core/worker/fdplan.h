/* SPDX-License-Identifier: MIT */
/*
 * fdplan: descriptors as SPEC.md "Descriptors" plans them. The master
 * raises its soft RLIMIT_NOFILE to the hard limit at start (its children
 * inherit it); each worker holds at most the sessions that fit its limit,
 * two descriptors each, after what the process itself needs, the splice
 * pipes and one reserve descriptor kept to refuse a connection cleanly.
 */
#ifndef SMTPFRONT_FDPLAN_H
#define SMTPFRONT_FDPLAN_H

#include <stddef.h>

#include "config/config.h"

/* Raise the soft limit to the hard one; returns the soft limit in force
 * afterwards (unchanged when raising failed). */
unsigned long fdplan_raise(void);
/* The soft limit, or the hard one (what the master will raise to). */
unsigned long fdplan_limit(bool hard);
/* Sessions one worker can hold under `limit` with `nbinds` listening
 * sockets (at least 1). */
unsigned fdplan_worker_sessions(unsigned long limit, size_t nbinds);
/* Bind addresses of all listeners. */
size_t fdplan_binds(const struct config *cfg);
/*
 * Sessions all workers together can hold under `limit`. When that is less
 * than the listeners' max_connections added up, writes a warning for the
 * operator into msg and returns the number; msg is "" otherwise.
 */
unsigned long fdplan_check(const struct config *cfg, unsigned long limit,
    char *msg, size_t cap);

#endif
