/* SPDX-License-Identifier: MIT */
/*
 * sandbox: the seccomp allowlists of the worker and the health process,
 * built with libseccomp, and the SIGSYS handler that tells the master which
 * call a child was killed for. The lists are what the loops were seen to
 * call under strace over the e2e and Postfix suites (README "Sandbox").
 *
 * A forbidden call traps (SECCOMP_RET_TRAP) rather than killing outright:
 * the kernel's SIGSYS carries the call's number, which the handler sends on
 * the child's channel; then it makes one more forbidden call with SIGSYS
 * blocked, and the kernel, forcing the signal through, kills the process
 * with its default action. If the handler cannot run at all (no stack, say),
 * the kernel forces SIGSYS the same way: the child dies of it either way.
 */
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <linux/sockios.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <seccomp.h>

#ifdef SMTPFRONT_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

#include "core/child.h"
#include "core/log.h"
#include "core/sandbox.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANDBOX_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || \
    __has_feature(thread_sanitizer)
#define SANDBOX_SANITIZED 1
#endif
#endif
#if defined(SMTPFRONT_SANITIZED) && SMTPFRONT_SANITIZED
#undef SANDBOX_SANITIZED
#define SANDBOX_SANITIZED 1
#endif

const char *const sandbox_role_names[] = { "worker", "health process" };

/* Where the SIGSYS handler reports; set before the filter is loaded. */
static int sandbox_report_fd = -1;

/*
 * Both roles. Seen under strace over the suites: the loop (epoll, reads,
 * sends, connects, socket options), descriptors closed, memory (brk, mmap,
 * mremap, munmap), log lines (a write to stderr; a datagram to /dev/log),
 * exit_group; the health process also sets up its loop after the filter
 * (epoll_create1, libevent's pipe2, signalfd4, rt_sigprocmask, and the
 * get*id() of libevent's setuid check). Not seen but on paths the code
 * has: readv (relay.c), sendmsg (relay.c), poll (worker.c); and what glibc
 * and libevent call elsewhere: clock_* and gettimeofday where the vDSO
 * does not answer, epoll_pwait and ppoll (the only ones on arm64),
 * madvise (free), futex, getrandom, rt_sigreturn, restart_syscall, exit.
 * The log (core/log.c) writes a pipe on stderr with pwritev2(RWF_NOWAIT);
 * readers of a table whose writer is mid-update (clients.c, deny.c) yield
 * with sched_yield before they look again.
 */
static const int sandbox_common[] = {
	SCMP_SYS(read), SCMP_SYS(readv), SCMP_SYS(write), SCMP_SYS(pwritev2),
	SCMP_SYS(sched_yield),
	SCMP_SYS(recvfrom), SCMP_SYS(sendto), SCMP_SYS(sendmsg),
	SCMP_SYS(close), SCMP_SYS(shutdown), SCMP_SYS(connect),
	SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(getsockname),
	SCMP_SYS(getpeername),
	SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait),
	SCMP_SYS(epoll_pwait), SCMP_SYS(poll), SCMP_SYS(ppoll),
	SCMP_SYS(pipe2), SCMP_SYS(fcntl),
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday),
	SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise),
	SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(signalfd4),
	SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getuid), SCMP_SYS(geteuid),
	SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(getrandom),
	SCMP_SYS(futex), SCMP_SYS(restart_syscall), SCMP_SYS(exit),
	SCMP_SYS(exit_group),
};

/* The worker's own: accepting, splicing bodies through pipes (whose size
 * fcntl sets), the reserve descriptor (an eventfd) taken back after a
 * refusal. */
static const int sandbox_worker[] = {
	SCMP_SYS(accept4), SCMP_SYS(splice), SCMP_SYS(eventfd2),
};

/* ioctl: the relay asks how much a peer has not acknowledged yet (the
 * worker only). */
static const unsigned long sandbox_worker_ioctls[] = { SIOCOUTQ };

static int
sandbox_allow(scmp_filter_ctx ctx, const int *calls, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i], 0);

		/* -EDOM etc.: not a call of this architecture; skip it. */
		if (rc != 0 && rc != -EDOM && rc != -EINVAL) {
			errno = -rc;
			return -1;
		}
	}
	return 0;
}

/* socket(): TCP over IPv4/IPv6 (backends, checks), Unix datagrams (syslog).
 * SOCK_NONBLOCK and SOCK_CLOEXEC may be or'ed into the type. */
static int
sandbox_allow_sockets(scmp_filter_ctx ctx)
{
	static const struct { int family, type; } ok[] = {
		{ AF_INET, SOCK_STREAM },
		{ AF_INET6, SOCK_STREAM },
		{ AF_UNIX, SOCK_DGRAM },
	};
	const scmp_datum_t mask = 0xffffffffu &
	    ~(scmp_datum_t)(SOCK_NONBLOCK | SOCK_CLOEXEC);

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket),
		    2, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)ok[i].family),
		    SCMP_A1(SCMP_CMP_MASKED_EQ, mask,
		    (scmp_datum_t)ok[i].type));

		if (rc != 0) {
			errno = -rc;
			return -1;
		}
	}
	return 0;
}

/* Memory never executable (no code can be mapped or made runnable); the
 * worker's ioctl requests. */
static int
sandbox_allow_args(scmp_filter_ctx ctx, enum sandbox_role role)
{
	int rc;

	rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
	    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
		    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	for (size_t i = 0; rc == 0 && role == SANDBOX_WORKER && i <
	    sizeof(sandbox_worker_ioctls) / sizeof(sandbox_worker_ioctls[0]);
	    i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
		    SCMP_A1(SCMP_CMP_EQ,
		    (scmp_datum_t)sandbox_worker_ioctls[i]));
	if (rc != 0) {
		errno = -rc;
		return -1;
	}
	return 0;
}

/* Async-signal-safe: one send, then death by SIGSYS. */
static void
sandbox_on_sigsys(int sig, siginfo_t *si, void *uctx)
{
	unsigned char msg[1 + sizeof(struct sandbox_report)];
	struct sandbox_report r;
	int e = errno;

	r.arch = (uint32_t)si->si_arch;
	r.nr = (int32_t)si->si_syscall;
	msg[0] = CHILD_MSG_SANDBOX;
	memcpy(msg + 1, &r, sizeof(r));
	if (sandbox_report_fd != -1)
		(void)send(sandbox_report_fd, msg, sizeof(msg),
		    MSG_NOSIGNAL | MSG_DONTWAIT);
	errno = e;
	/* SA_RESETHAND put the default action back; SIGSYS is blocked while
	 * this runs, so the kernel forces the next one through with it. */
	(void)syscall(SYS_execve, NULL, NULL, NULL);
	_exit(128 + SIGSYS);	/* not reached */
}

const char *
sandbox_unavailable(void)
{
#ifdef SANDBOX_SANITIZED
	return "a sanitizer build (its runtime opens files and may run a "
	    "symbolizer when it reports)";
#else
#ifdef SMTPFRONT_HAVE_VALGRIND_H
	if (RUNNING_ON_VALGRIND)
		return "running under valgrind (it makes system calls of its "
		    "own for the child)";
#endif
	return NULL;
#endif
}

int
sandbox_enter(enum sandbox_role role, int report_fd)
{
	struct sigaction sa;
	scmp_filter_ctx ctx;
	sigset_t sys;
	int rc;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sandbox_on_sigsys;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	sandbox_report_fd = report_fd;
	/* localtime_r() in log lines reads the zone file on its first use:
	 * read it now, while files may still be opened. */
	tzset();
	/* The log may reconnect to the syslog socket: only as a datagram
	 * socket from here on (socket() allows no Unix stream). */
	log_sandboxed();
	if (sigaction(SIGSYS, &sa, NULL) == -1 ||
	    sigprocmask(SIG_UNBLOCK, &sys, NULL) == -1) {
		log_err("sandbox: SIGSYS handler");
		return -1;
	}
#ifdef SMTPFRONT_SANDBOX_LEARN
	/* Refreshing the lists (README "Sandbox"): allow and log everything,
	 * trace the suites, read what each child called after seccomp(). */
	if ((ctx = seccomp_init(SCMP_ACT_LOG)) == NULL) {
#else
	if ((ctx = seccomp_init(SCMP_ACT_TRAP)) == NULL) {
#endif
		log_errx("sandbox: seccomp_init failed");
		return -1;
	}
	/* A call of another ABI (i386 on x86_64) is as forbidden. */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
	    SCMP_ACT_TRAP)) != 0 ||
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1)) != 0) {
		errno = -rc;
		log_err("sandbox: seccomp_attr_set");
		seccomp_release(ctx);
		return -1;
	}
#if SCMP_VER_MAJOR > 2 || (SCMP_VER_MAJOR == 2 && SCMP_VER_MINOR >= 5)
	/* A binary tree over the call numbers: fewer BPF instructions per
	 * call than a linear list. */
	(void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
#endif
	if (sandbox_allow(ctx, sandbox_common,
	    sizeof(sandbox_common) / sizeof(sandbox_common[0])) == -1 ||
	    (role == SANDBOX_WORKER && sandbox_allow(ctx, sandbox_worker,
	    sizeof(sandbox_worker) / sizeof(sandbox_worker[0])) == -1) ||
	    sandbox_allow_sockets(ctx) == -1 ||
	    sandbox_allow_args(ctx, role) == -1) {
		log_err("sandbox: seccomp_rule_add");
		seccomp_release(ctx);
		return -1;
	}
	/* libseccomp sets no_new_privs itself (SCMP_FLTATR_CTL_NNP); asking
	 * first makes a failure name the step. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		log_err("sandbox: prctl(PR_SET_NO_NEW_PRIVS)");
		seccomp_release(ctx);
		return -1;
	}
	if ((rc = seccomp_load(ctx)) != 0) {
		errno = -rc;
		log_err("sandbox: loading the %s filter",
		    sandbox_role_names[role]);
		seccomp_release(ctx);
		return -1;
	}
	seccomp_release(ctx);
	return 0;
}

const char *
sandbox_syscall_name(uint32_t arch, int32_t nr, char *buf, size_t len)
{
	char *name = seccomp_syscall_resolve_num_arch(arch != 0 ? arch :
	    SCMP_ARCH_NATIVE, nr);

	if (name != NULL) {
		snprintf(buf, len, "%s", name);
		free(name);
	} else
		snprintf(buf, len, "#%ld", (long)nr);
	return buf;
}
