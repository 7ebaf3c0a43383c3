/* SPDX-License-Identifier: MIT */
/*
 * health: the health process (one, unprivileged), the only writer of the
 * health region of shared memory.
 */
#ifndef SMTPFRONT_HEALTH_H
#define SMTPFRONT_HEALTH_H

#include "core/runtime.h"

/* Run the health process in the freshly forked child; never returns. */
void health_main(const struct runtime *rt, int parent_fd)
    __attribute__((noreturn));

#endif
