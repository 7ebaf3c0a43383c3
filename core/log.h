/* SPDX-License-Identifier: MIT */
/*
 * log: one place for every line the daemon writes, to stderr or syslog.
 * log_warn adds strerror(errno); log_warnx does not (OpenBSD style).
 */
#ifndef SMTPFRONT_LOG_H
#define SMTPFRONT_LOG_H

#include <stdbool.h>

#include "config/config.h"

void log_init(const char *ident, bool to_syslog, int facility,
    enum cfg_log_level level);
/* Re-open after fork or on a config change; keeps ident. */
void log_setup(bool to_syslog, int facility, enum cfg_log_level level);
bool log_enabled(enum cfg_log_level level);

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

#endif
