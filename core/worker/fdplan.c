/* SPDX-License-Identifier: MIT */
/*
 * fdplan: how many sessions the descriptor limit allows, worked out once
 * so the master's warning, `smtpfront -t` and each worker's cap agree.
 */
#include <sys/resource.h>

#include <stdio.h>

#include "core/worker/fdplan.h"
#include "core/worker/session.h"

/* What a worker holds besides sessions and pipes: stdio, the epoll set,
 * the signalfd, the master's pipe, syslog, libevent's own, and margin. */
#define FDPLAN_BASE		16
/* Per bind address: the listening socket and its wake-up descriptor. */
#define FDPLAN_PER_BIND		2
/* Kept closed-ready to accept and refuse one connection at the limit. */
#define FDPLAN_RESERVE		1

unsigned long
fdplan_raise(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t cur = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			rl.rlim_cur = cur;
	}
	return rl.rlim_cur == RLIM_INFINITY ? (unsigned long)1 << 20 :
	    (unsigned long)rl.rlim_cur;
}

unsigned long
fdplan_limit(bool hard)
{
	struct rlimit rl;
	rlim_t v;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return 1024;
	v = hard ? rl.rlim_max : rl.rlim_cur;
	return v == RLIM_INFINITY ? (unsigned long)1 << 20 : (unsigned long)v;
}

unsigned
fdplan_worker_sessions(unsigned long limit, size_t nbinds)
{
	unsigned long fixed = FDPLAN_BASE + FDPLAN_PER_BIND * nbinds +
	    SESSION_PIPE_FDS + FDPLAN_RESERVE;

	if (limit <= fixed + 2)
		return 1;
	return (unsigned)((limit - fixed) / 2 > 0xffffffu ? 0xffffffu :
	    (limit - fixed) / 2);
}

size_t
fdplan_binds(const struct config *cfg)
{
	size_t n = 0;

	for (size_t i = 0; i < cfg->nlisteners; i++)
		n += cfg->listeners[i].nbinds;
	return n;
}

unsigned long
fdplan_check(const struct config *cfg, unsigned long limit, char *msg,
    size_t cap)
{
	unsigned long want = 0, fit;

	for (size_t i = 0; i < cfg->nlisteners; i++)
		want += cfg->listeners[i].max_connections;
	fit = (unsigned long)cfg->workers *
	    fdplan_worker_sessions(limit, fdplan_binds(cfg));
	msg[0] = '\0';
	if (fit < want)
		snprintf(msg, cap, "max_connections of the listeners add up "
		    "to %lu, but a descriptor limit (RLIMIT_NOFILE) of %lu "
		    "lets %u worker(s) hold %lu sessions (2 descriptors "
		    "each); over that, clients get 421 4.7.0. Raise the hard "
		    "limit (LimitNOFILE= in the systemd unit, ulimit -Hn) or "
		    "lower max_connections", want, limit, cfg->workers, fit);
	return fit;
}
