/* SPDX-License-Identifier: MIT */
/*
 * master: the process that owns listeners, shared memory and children.
 */
#ifndef SMTPFRONT_MASTER_H
#define SMTPFRONT_MASTER_H

#include "config/config.h"

/* The command line, for the exec of an upgrade (before master_run). */
void master_set_argv(char **argv);
/* Run until stopped; returns the process exit code. Takes `cfg`. */
int master_run(struct config *cfg);
/*
 * The environment variable that tells a starting smtpfront it is the new
 * image of an upgrade (set by the previous image before its exec), and the
 * entry point then: take over the running master's state and start a new
 * generation from the config at path. Returns the exit code.
 */
#define MASTER_HANDOVER_ENV	"SMTPFRONT_HANDOVER"
int master_run_upgraded(const char *path);

#endif
