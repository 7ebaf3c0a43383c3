/* SPDX-License-Identifier: MIT */
/*
 * notify: systemd's readiness protocol (sd_notify) without libsystemd:
 * one datagram to $NOTIFY_SOCKET. A no-op when that variable is unset.
 */
#ifndef SMTPFRONT_NOTIFY_H
#define SMTPFRONT_NOTIFY_H

#include <stdbool.h>

/* Send `state` ("READY=1", "STOPPING=1", "RELOADING=1", "STATUS=..."; lines
 * separated by '\n'). Returns 0 when sent or not asked for, -1 on error
 * (logged once by the caller if it matters). */
int notify_send(const char *state);
/* Is there a service manager to tell (NOTIFY_SOCKET set)? */
bool notify_wanted(void);
/* state with fd attached (SCM_RIGHTS): "FDSTORE=1\nFDNAME=NAME" keeps it
 * in the service manager's file descriptor store (NAME: printable ASCII,
 * no ':'); storing the same socket again is a no-op for systemd. */
int notify_send_fd(const char *state, int fd);
/* Drop every descriptor stored under name. */
int notify_remove_fd(const char *name);

#endif
