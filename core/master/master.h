/* SPDX-License-Identifier: MIT */
/*
 * master: the process that owns listeners, shared memory and children.
 */
#ifndef SMTPFRONT_MASTER_H
#define SMTPFRONT_MASTER_H

#include "config/config.h"

/* Run until stopped; returns the process exit code. Takes `cfg`. */
int master_run(struct config *cfg);

#endif
