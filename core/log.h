/* SPDX-License-Identifier: MIT */
/*
 * log: one place for every line the daemon writes, to stderr or syslog.
 * log_warn adds strerror(errno); log_warnx does not (OpenBSD style).
 * Writing never blocks: a line the log does not take at once is dropped
 * and counted, and the next line that gets through is preceded by one
 * saying how many were dropped (SPEC.md "Logging never blocks a session").
 */
#ifndef SMTPFRONT_LOG_H
#define SMTPFRONT_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* The syslog socket when the configuration names none. */
#define LOG_SYSLOG_DEFAULT	"/dev/log"

/* Set the ident and log as told, syslog at LOG_SYSLOG_DEFAULT. */
void log_init(const char *ident, bool to_syslog, int facility,
    enum cfg_log_level level);
/* Apply cfg's log: section (start, reload, and in every child after
 * fork); keeps the ident. */
void log_setup(const struct config *cfg);
bool log_enabled(enum cfg_log_level level);
/*
 * The descriptors the log writes to (at most LOG_MAX_FDS), for a child
 * that closes everything else before log_setup() opens its own.
 */
#define LOG_MAX_FDS	2
size_t log_fds(int fds[LOG_MAX_FDS]);
/*
 * Count this process's dropped lines in *word from now on (a word of
 * shared memory that this process alone writes, so the master can show
 * the total); what it counted in its own memory before is added to it. A
 * forked child counts in its own memory until it calls this: its parent's
 * word is its parent's. NULL: back to its own memory (tests).
 */
void log_count_drops_in(uint64_t *word);
/* Lines this process dropped since it started (or was forked). */
uint64_t log_dropped(void);

void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_errx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* The process is about to put on its seccomp filter: from now on the
 * syslog socket is reconnected as a datagram socket only. */
void log_sandboxed(void);

#endif
