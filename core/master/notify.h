/* SPDX-License-Identifier: MIT */
/*
 * notify: systemd's readiness protocol (sd_notify) without libsystemd:
 * one datagram to $NOTIFY_SOCKET. A no-op when that variable is unset.
 */
#ifndef SMTPFRONT_NOTIFY_H
#define SMTPFRONT_NOTIFY_H

/* Send `state` ("READY=1", "STOPPING=1", "RELOADING=1", "STATUS=..."; lines
 * separated by '\n'). Returns 0 when sent or not asked for, -1 on error
 * (logged once by the caller if it matters). */
int notify_send(const char *state);

#endif
