/* SPDX-License-Identifier: MIT */
/*
 * log: formats and routes every log line. stderr lines carry the ident and
 * pid like syslog would ("smtpfront[42]: warning: ..."), so the same grep
 * works on the journal and in tests.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "core/log.h"

static const char *log_ident = "smtpfront";
static bool log_syslog;
static enum cfg_log_level log_level = CFG_LOG_INFO;

void
log_init(const char *ident, bool to_syslog, int facility,
    enum cfg_log_level level)
{
	log_ident = ident;
	log_setup(to_syslog, facility, level);
}

void
log_setup(bool to_syslog, int facility, enum cfg_log_level level)
{
	if (log_syslog)
		closelog();
	log_syslog = to_syslog;
	log_level = level;
	if (to_syslog)
		openlog(log_ident, LOG_PID | LOG_NDELAY, facility);
}

bool
log_enabled(enum cfg_log_level level)
{
	return level <= log_level;
}

static void
log_vwrite(enum cfg_log_level level, int errnum, const char *fmt, va_list ap)
{
	static const char *const prefix[] = {
		[CFG_LOG_ERROR] = "error: ",
		[CFG_LOG_WARNING] = "warning: ",
		[CFG_LOG_INFO] = "",
		[CFG_LOG_DEBUG] = "debug: ",
	};
	static const int prio[] = {
		[CFG_LOG_ERROR] = LOG_ERR,
		[CFG_LOG_WARNING] = LOG_WARNING,
		[CFG_LOG_INFO] = LOG_INFO,
		[CFG_LOG_DEBUG] = LOG_DEBUG,
	};
	char msg[2048];
	int n;

	if (!log_enabled(level))
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n >= 0 && errnum != 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s",
		    strerror(errnum));
	if (log_syslog)
		syslog(prio[level], "%s%s", prefix[level], msg);
	else
		/* One fprintf: stderr is unbuffered, so one write per line. */
		fprintf(stderr, "%s[%ld]: %s%s\n", log_ident, (long)getpid(),
		    prefix[level], msg);
}

#define LOG_FN(fn, level, with_errno)				\
void									\
fn(const char *fmt, ...)						\
{									\
	int saved = errno;						\
	va_list ap;							\
	va_start(ap, fmt);						\
	log_vwrite(level, with_errno ? saved : 0, fmt, ap);		\
	va_end(ap);							\
	errno = saved;							\
}

LOG_FN(log_err, CFG_LOG_ERROR, 1)
LOG_FN(log_errx, CFG_LOG_ERROR, 0)
LOG_FN(log_warn, CFG_LOG_WARNING, 1)
LOG_FN(log_warnx, CFG_LOG_WARNING, 0)
LOG_FN(log_info, CFG_LOG_INFO, 0)
LOG_FN(log_debug, CFG_LOG_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(CFG_LOG_ERROR, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(CFG_LOG_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
