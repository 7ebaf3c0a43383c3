/* SPDX-License-Identifier: MIT */
/*
 * log: formats and routes every log line, and never blocks doing it.
 * stderr lines carry the ident and pid like syslog would ("smtpfront[42]:
 * warning: ..."), so the same grep works on the journal and in tests; when
 * stderr is not the journal (which stamps lines itself) they start with
 * the local time, RFC 3339 with milliseconds. Syslog lines are RFC 3164
 * datagrams ("<22>Jun  1 12:34:56 smtpfront[42]: ...") sent to the syslog
 * socket without waiting, as HAProxy does, rather than through syslog(3),
 * which blocks while journald or rsyslog is stalled. `target: syslog`
 * without a syslog socket to talk to falls back to stderr and says so
 * once, rather than dropping every line.
 *
 * A line the log does not take at once (a full pipe, a full socket
 * buffer, a syslog socket that is gone) is dropped and counted; the next
 * line that goes through is preceded by one saying how many were lost.
 * Each process counts its own, in a word of shared memory it alone writes
 * once it has one (log_count_drops_in), so the master can show the total.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define LOG_MSG_MAX	2048		/* the message, errno text included */
#define LOG_LINE_MAX	(LOG_MSG_MAX + 320)	/* with stamp, ident, prefix */
/* A syslog socket that could not be reached is tried again after this. */
#define LOG_RETRY_US	1000000

/*
 * Where lines go. A stream (a pipe, a terminal, a stream socket) may take
 * part of a line; the rest waits in `tail` and goes out before anything
 * else, so a stream never carries half a line followed by another.
 */
enum log_how {
	LOG_HOW_WRITE,		/* write(): a file, or a descriptor of our own */
	LOG_HOW_SEND,		/* a socket: send(MSG_DONTWAIT) */
	LOG_HOW_NOWAIT,		/* a pipe: pwritev2(RWF_NOWAIT) */
};

struct log_sink {
	int fd;			/* -1: nothing to write to */
	bool own;		/* fd was opened here (closed on setup) */
	enum log_how how;
	bool stream;		/* may take part of a line */
	dev_t dev;		/* what fd is (stderr: kept across setups) */
	ino_t ino;
	size_t tail_len;
	char tail[2 * LOG_LINE_MAX];	/* a line and the count before it */
};

static const char *log_ident = "smtpfront";
static bool log_syslog;
static bool log_stamp;
static int log_facility = LOG_MAIL;
static enum cfg_log_level log_level = CFG_LOG_INFO;
static char log_syslog_path[sizeof(((struct sockaddr_un *)0)->sun_path)] =
    LOG_SYSLOG_DEFAULT;
static int64_t log_syslog_retry_us;	/* reconnect not before this */
/* The syslog fallback was reported (inherited by children: said once). */
static bool log_fallback_said;
/* Under the seccomp filter (sandbox.c): no Unix stream socket. */
static bool log_in_sandbox;

static struct log_sink log_err_sink = { .fd = STDERR_FILENO };
static struct log_sink log_sys_sink = { .fd = -1 };

/* Dropped lines: this process's own count, where it is published, and
 * how many the log has not been told about yet. */
static pid_t log_pid;
static uint64_t log_drops_own;
static uint64_t *log_drops = &log_drops_own;
static uint64_t log_unreported;

static int64_t
log_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A forked child starts from zero: what its parent dropped is the
 * parent's to count and report, and a line its parent wrote in part is
 * the parent's to finish. */
static void
log_check_fork(void)
{
	pid_t pid = getpid();

	if (pid == log_pid)
		return;
	log_pid = pid;
	log_drops_own = 0;
	log_drops = &log_drops_own;
	log_unreported = 0;
	log_err_sink.tail_len = 0;
	log_sys_sink.tail_len = 0;
}

static void
log_sink_close(struct log_sink *s)
{
	if (s->own && s->fd != -1)
		close(s->fd);
	s->fd = -1;
	s->own = false;
	s->how = LOG_HOW_WRITE;
	s->stream = false;
	s->tail_len = 0;
}

/* Is stderr the journal? systemd sets JOURNAL_STREAM to "dev:ino" of the
 * stream it connected; anything else (a terminal, a pipe, a file) gets
 * timestamps. */
static bool
log_stderr_is_journal(const struct stat *st)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return false;
	return (unsigned long long)st->st_dev == dev &&
	    (unsigned long long)st->st_ino == ino;
}

/*
 * A description of stderr's pipe or terminal that nobody else shares,
 * opened through /proc/self/fd/2 with O_NONBLOCK (smtpfront's children
 * inherit it, and all of them write through here). When that cannot be
 * opened: a pipe gets O_NONBLOCK on fd 2 itself (its other writers are
 * smtpfront's own processes wherever stderr is a pipe: a supervisor or
 * `| logger` reads it); a terminal is left alone and written as it is,
 * since changing the terminal under the user's shell is worse than a
 * line that waits for the user's ^Q.
 */
static void
log_stderr_private(struct log_sink *s, bool pipe)
{
	int fd, fl;

	s->how = LOG_HOW_WRITE;
	fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC |
	    O_NOCTTY);
	if (fd != -1) {
		s->fd = fd;
		s->own = true;
		return;
	}
	if (pipe && (fl = fcntl(STDERR_FILENO, F_GETFL)) != -1)
		(void)fcntl(STDERR_FILENO, F_SETFL, fl | O_NONBLOCK);
}

/*
 * Make writing to stderr non-blocking without changing it for anyone
 * else. O_NONBLOCK belongs to the open file description, which stderr
 * shares with the master, the other children, and whatever started
 * smtpfront (a shell's terminal, systemd): setting it on fd 2 would make
 * a shell's own writes fail with EAGAIN. So each write is made
 * non-blocking by itself:
 *   - a socket (the journal's stream, under systemd): send() with
 *     MSG_DONTWAIT;
 *   - a pipe or FIFO: pwritev2() with RWF_NOWAIT (Linux 5.9 and later;
 *     an older kernel says EOPNOTSUPP, and log_stderr_private() is used);
 *   - a terminal: log_stderr_private();
 *   - a regular file, a block device, /dev/null: write() as it is (they
 *     never say EAGAIN; a write waits for the disk at worst, not for a
 *     reader).
 */
static void
log_stderr_open(void)
{
	struct log_sink *s = &log_err_sink;
	struct stat st;
	int type;
	socklen_t tl = sizeof(type);
	size_t tail = s->tail_len;
	dev_t dev = s->dev;
	ino_t ino = s->ino;

	log_sink_close(s);
	log_stamp = true;
	if (fstat(STDERR_FILENO, &st) == -1)
		return;			/* no stderr: lines are dropped */
	log_stamp = !log_stderr_is_journal(&st);
	s->fd = STDERR_FILENO;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	/* A reload: the end of a line taken in part still goes out first. */
	if (st.st_dev == dev && st.st_ino == ino)
		s->tail_len = tail;
	if (S_ISSOCK(st.st_mode)) {
		s->how = LOG_HOW_SEND;
		s->stream = getsockopt(STDERR_FILENO, SOL_SOCKET, SO_TYPE,
		    &type, &tl) == -1 || type == SOCK_STREAM;
	} else if (S_ISFIFO(st.st_mode)) {
		s->how = LOG_HOW_NOWAIT;
		s->stream = true;
	} else if (isatty(STDERR_FILENO)) {
		s->stream = true;
		log_stderr_private(s, false);
	}
}

/* Connect a socket to the syslog socket: a datagram one, or a stream one
 * when that is what listens there. 0, or -1 with errno. */
static int
log_syslog_connect(void)
{
	static const int types[] = { SOCK_DGRAM, SOCK_STREAM };
	struct log_sink *s = &log_sys_sink;
	struct sockaddr_un sun;
	int fd, e = ENOENT;
	/* A sandboxed child may create no Unix stream socket: datagrams only
	 * (journald's and rsyslog's /dev/log are datagram sockets). */
	size_t ntypes = log_in_sandbox ? 1 : 2;

	log_sink_close(s);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, log_syslog_path, sizeof(sun.sun_path));
	for (size_t i = 0; i < ntypes; i++) {
		fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    0);
		if (fd == -1)
			return -1;
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			s->fd = fd;
			s->own = true;
			s->how = LOG_HOW_SEND;
			s->stream = types[i] == SOCK_STREAM;
			return 0;
		}
		e = errno;
		close(fd);
		if (e != EPROTOTYPE)
			break;
	}
	log_syslog_retry_us = log_now_us() + LOG_RETRY_US;
	errno = e;
	return -1;
}

static void
log_apply(bool to_syslog, int facility, enum cfg_log_level level,
    const char *syslog_path)
{
	int e = 0;

	log_check_fork();
	log_level = level;
	log_facility = facility;
	snprintf(log_syslog_path, sizeof(log_syslog_path), "%s",
	    syslog_path != NULL && syslog_path[0] != '\0' ? syslog_path :
	    LOG_SYSLOG_DEFAULT);
	log_sink_close(&log_sys_sink);
	log_stderr_open();
	if (to_syslog && log_syslog_connect() == -1) {
		e = errno;
		to_syslog = false;
	}
	log_syslog = to_syslog;
	if (to_syslog) {
		log_fallback_said = false;
	} else if (e != 0 && !log_fallback_said) {
		log_fallback_said = true;
		log_warnx("log: target syslog, but %s cannot be reached (%s): "
		    "logging to stderr instead", log_syslog_path, strerror(e));
	}
}

void
log_init(const char *ident, bool to_syslog, int facility,
    enum cfg_log_level level)
{
	log_ident = ident;
	log_apply(to_syslog, facility, level, NULL);
}

void
log_setup(const struct config *cfg)
{
	log_apply(cfg->log.target == CFG_LOG_SYSLOG, cfg->log.facility,
	    cfg->log.level, cfg->log.syslog_socket);
}

bool
log_enabled(enum cfg_log_level level)
{
	return level <= log_level;
}

size_t
log_fds(int fds[LOG_MAX_FDS])
{
	size_t n = 0;

	if (log_sys_sink.fd != -1)
		fds[n++] = log_sys_sink.fd;
	if (log_err_sink.own && log_err_sink.fd != -1)
		fds[n++] = log_err_sink.fd;
	return n;
}

void
log_count_drops_in(uint64_t *word)
{
	log_check_fork();
	if (word == log_drops)
		return;
	if (word == NULL) {
		log_drops_own = *log_drops;
		log_drops = &log_drops_own;
		return;
	}
	/* What was counted in another word stays counted there. */
	if (log_drops == &log_drops_own)
		__atomic_store_n(word, *word + log_drops_own,
		    __ATOMIC_RELAXED);
	log_drops = word;
}

uint64_t
log_dropped(void)
{
	log_check_fork();
	return __atomic_load_n(log_drops, __ATOMIC_RELAXED);
}

static void
log_drop(void)
{
	log_unreported++;
	/* Single writer: a plain read-modify-write, published for readers. */
	__atomic_store_n(log_drops, *log_drops + 1, __ATOMIC_RELAXED);
}

static ssize_t
log_sink_syscall(struct log_sink *s, const char *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)(uintptr_t)buf,
	    .iov_len = len };
	ssize_t n;

	switch (s->how) {
	case LOG_HOW_SEND:
		return send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	case LOG_HOW_NOWAIT:
		n = pwritev2(s->fd, &iov, 1, -1, RWF_NOWAIT);
		if (n != -1 || errno != EOPNOTSUPP)
			return n;
		log_stderr_private(s, true);
		return write(s->fd, buf, len);
	default:
		return write(s->fd, buf, len);
	}
}

/* Write buf without waiting: 1 written (maybe in part, the rest then in
 * the tail), 0 not taken (full: EAGAIN, ENOBUFS), -1 another error. */
static int
log_sink_put(struct log_sink *s, const char *buf, size_t len)
{
	ssize_t n;

	if (s->fd == -1) {
		errno = EBADF;
		return -1;
	}
	do {
		n = log_sink_syscall(s, buf, len);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == ENOBUFS ? 0 : -1;
	if ((size_t)n < len && s->stream) {
		memcpy(s->tail, buf + n, len - (size_t)n);
		s->tail_len = len - (size_t)n;
	}
	return 1;
}

/* What is left of a line taken in part: 1 when it is all out now. */
static int
log_sink_flush(struct log_sink *s)
{
	char rest[sizeof(s->tail)];
	size_t len = s->tail_len;
	int rc;

	if (len == 0)
		return 1;
	memcpy(rest, s->tail, len);
	s->tail_len = 0;
	rc = log_sink_put(s, rest, len);
	if (rc != 1) {
		memcpy(s->tail, rest, len);
		s->tail_len = len;
	}
	return rc == 1 && s->tail_len == 0 ? 1 : 0;
}

static int
log_sink_write(struct log_sink *s, const char *buf, size_t len)
{
	if (log_sink_flush(s) != 1)
		return 0;
	return log_sink_put(s, buf, len);
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

/* RFC 3164's "Jun  1 12:34:56" (the C locale's month names). */
static void
log_syslog_time(char *buf, size_t cap)
{
	static const char *const months[] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
		"Oct", "Nov", "Dec",
	};
	time_t now = time(NULL);
	struct tm tm;

	if (localtime_r(&now, &tm) == NULL || tm.tm_mon < 0 || tm.tm_mon > 11)
		memset(&tm, 0, sizeof(tm));
	snprintf(buf, cap, "%s %2d %02d:%02d:%02d", months[tm.tm_mon],
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static size_t
log_clamp(int n, size_t cap)
{
	return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* Send one line to syslog; a socket that went away (the daemon
 * restarted) is reconnected once, and not tried again for a second when
 * that fails. 1 sent, 0 or -1 not. */
static int
log_syslog_put(const char *line, size_t len)
{
	struct log_sink *s = &log_sys_sink;
	int rc;

	if (s->fd == -1 && (log_now_us() < log_syslog_retry_us ||
	    log_syslog_connect() == -1))
		return -1;
	rc = log_sink_write(s, line, len);
	if (rc != -1)
		return rc;
	switch (errno) {
	case ECONNREFUSED:
	case ECONNRESET:
	case ENOTCONN:
	case EPIPE:
	case EDESTADDRREQ:
	case ENOENT:
		if (log_syslog_connect() == -1)
			return -1;
		return log_sink_write(s, line, len);
	default:
		return -1;
	}
}

/* Format one line for the target in use into buf (a syslog datagram, or
 * a line ended by a newline, or by a NUL on a syslog stream); its length. */
static size_t
log_format(enum cfg_log_level level, const char *msg, char *buf, size_t cap)
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
	char stamp[48];
	size_t len;

	if (log_syslog) {
		log_syslog_time(stamp, sizeof(stamp));
		len = log_clamp(snprintf(buf, cap, "<%d>%s %s[%ld]: %s%s",
		    log_facility | prio[level], stamp, log_ident,
		    (long)log_pid, prefix[level], msg), cap - 1);
		/* A stream carries lines ended by a NUL, as syslog(3) sends
		 * them; a datagram is one line. */
		if (log_sys_sink.stream)
			buf[len++] = '\0';
		return len;
	}
	stamp[0] = '\0';
	if (log_stamp)
		log_timestamp(stamp, sizeof(stamp));
	len = log_clamp(snprintf(buf, cap, "%s%s[%ld]: %s%s", stamp,
	    log_ident, (long)log_pid, prefix[level], msg), cap - 1);
	buf[len++] = '\n';
	return len;
}

/*
 * One line, preceded by the count of those dropped before it when there
 * are some; a line that cannot be written is dropped and counted. On
 * stderr the count and the line go out in one write, so a pipe (which
 * takes up to PIPE_BUF bytes whole or not at all) never carries a count
 * without the line after it, nor a string of counts while only short
 * lines fit.
 */
static void
log_emit(enum cfg_log_level level, const char *msg)
{
	char note[128], out[2 * LOG_LINE_MAX];
	size_t len = 0;

	log_check_fork();
	if (log_unreported > 0) {
		snprintf(note, sizeof(note), "log: %" PRIu64 " line%s dropped "
		    "while the log was not taking them", log_unreported,
		    log_unreported == 1 ? "" : "s");
		len = log_format(CFG_LOG_WARNING, note, out, LOG_LINE_MAX);
		if (log_syslog) {
			if (log_syslog_put(out, len) != 1) {
				log_drop();
				return;
			}
			log_unreported = 0;
			len = 0;
		}
	}
	len += log_format(level, msg, out + len, LOG_LINE_MAX);
	if ((log_syslog ? log_syslog_put(out, len) :
	    log_sink_write(&log_err_sink, out, len)) != 1) {
		log_drop();
		return;
	}
	log_unreported = 0;
}

static void
log_vwrite(enum cfg_log_level level, int errnum, const char *fmt, va_list ap)
{
	char msg[LOG_MSG_MAX];
	int n;

	if (!log_enabled(level))
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n >= 0 && errnum != 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s",
		    strerror(errnum));
	log_emit(level, msg);
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

void
log_sandboxed(void)
{
	log_in_sandbox = true;
}
