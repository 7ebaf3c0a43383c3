/* SPDX-License-Identifier: MIT */
/*
 * log: formats and routes every log line. stderr lines carry the ident and
 * pid like syslog would ("smtpfront[42]: warning: ..."), so the same grep
 * works on the journal and in tests; when stderr is not the journal (which
 * stamps lines itself) they start with the local time, RFC 3339 with
 * milliseconds. `target: syslog` without a syslog socket to talk to falls
 * back to stderr and says so once, rather than dropping every line.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define LOG_SYSLOG_PATH	"/dev/log"

static const char *log_ident = "smtpfront";
static bool log_syslog;
static bool log_stamp;
static enum cfg_log_level log_level = CFG_LOG_INFO;
/* The syslog fallback was reported (inherited by children: said once). */
static bool log_fallback_said;

/* Is stderr the journal? systemd sets JOURNAL_STREAM to "dev:ino" of the
 * stream it connected; anything else (a terminal, a pipe, a file) gets
 * timestamps. */
static bool
log_stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) == -1)
		return false;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

/* Can a datagram or stream reach the syslog socket? 0, or -1 with errno. */
static int
log_syslog_reachable(void)
{
	static const int types[] = { SOCK_DGRAM, SOCK_STREAM };
	struct sockaddr_un sun;
	int fd, rc = -1, e = ENOENT;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, LOG_SYSLOG_PATH, sizeof(LOG_SYSLOG_PATH));
	for (size_t i = 0; i < 2 && rc == -1; i++) {
		fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
		if (fd == -1)
			return -1;
		rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
		e = errno;
		close(fd);
		if (rc == -1 && e != EPROTOTYPE)
			break;
	}
	errno = e;
	return rc;
}

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
	int e = 0;

	if (log_syslog)
		closelog();
	log_level = level;
	log_stamp = !log_stderr_is_journal();
	if (to_syslog && log_syslog_reachable() == -1) {
		e = errno;
		to_syslog = false;
	}
	log_syslog = to_syslog;
	if (to_syslog) {
		openlog(log_ident, LOG_PID | LOG_NDELAY, facility);
		log_fallback_said = false;
	} else if (e != 0 && !log_fallback_said) {
		log_fallback_said = true;
		log_warnx("log: target syslog, but %s cannot be reached (%s): "
		    "logging to stderr instead", LOG_SYSLOG_PATH, strerror(e));
	}
}

bool
log_enabled(enum cfg_log_level level)
{
	return level <= log_level;
}

/* "2025-06-01T12:34:56.789+02:00 " */
static void
log_timestamp(char *buf, size_t cap)
{
	struct timeval tv;
	struct tm tm;
	char date[32], zone[8];
	size_t n;

	gettimeofday(&tv, NULL);
	if (localtime_r(&tv.tv_sec, &tm) == NULL ||
	    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0 ||
	    strftime(zone, sizeof(zone), "%z", &tm) != 5) {
		buf[0] = '\0';
		return;
	}
	n = (size_t)snprintf(buf, cap, "%s.%03ld%.3s:%s ", date,
	    (long)(tv.tv_usec / 1000), zone, zone + 3);
	if (n >= cap)
		buf[0] = '\0';
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
	char msg[2048], stamp[48];
	int n;

	if (!log_enabled(level))
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n >= 0 && errnum != 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s",
		    strerror(errnum));
	if (log_syslog) {
		syslog(prio[level], "%s%s", prefix[level], msg);
		return;
	}
	stamp[0] = '\0';
	if (log_stamp)
		log_timestamp(stamp, sizeof(stamp));
	/* One fprintf: stderr is unbuffered, so one write per line. */
	fprintf(stderr, "%s%s[%ld]: %s%s\n", stamp, log_ident, (long)getpid(),
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
