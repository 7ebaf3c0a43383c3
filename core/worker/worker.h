/* SPDX-License-Identifier: MIT */
/*
 * worker: one unprivileged process running one libevent loop that accepts
 * on the shared listening sockets and relays sessions.
 */
#ifndef SMTPFRONT_WORKER_H
#define SMTPFRONT_WORKER_H

#include "core/runtime.h"

/*
 * Run a worker in the freshly forked child; never returns. `kick_fd` is an
 * eventfd shared by all workers: a write to it wakes one listening worker,
 * which then takes whatever waits on the listening sockets.
 */
void worker_main(const struct runtime *rt, unsigned slot, int parent_fd,
    int kick_fd) __attribute__((noreturn));
/* Wake one listening worker (master: after a worker died). */
void worker_kick(int kick_fd);

#endif
