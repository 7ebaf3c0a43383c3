/* SPDX-License-Identifier: MIT */
/*
 * pipepool: the pipes a worker's sessions splice message bodies through.
 * A side borrows one while bytes sit in it and gives it back empty. The
 * number of pipes open is bounded, so the descriptors a worker plans for
 * its sessions (SPEC.md "Descriptors") are never eaten by pipes: past the
 * bound, or when splice(2) does not work here, bytes are copied instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/worker/session_int.h"

/* Bytes asked of one splice(2); the pipe bounds what it moves. */
#define PIPEPOOL_PIPE_SIZE	(256 * 1024)

static int pool[SESSION_PIPES_MAX][2];
static unsigned npool;		/* idle pipes in `pool` */
static unsigned nopen;		/* pipes open: idle + lent */
static bool broken;		/* pipes cannot be had: copy only */

int
pipepool_get(struct session_side *d)
{
	if (broken)
		return -1;
	if (npool > 0) {
		npool--;
		d->pipe[0] = pool[npool][0];
		d->pipe[1] = pool[npool][1];
		return 0;
	}
	if (nopen >= SESSION_PIPES_MAX ||
	    pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) == -1) {
		d->pipe[0] = d->pipe[1] = -1;
		return -1;
	}
	nopen++;
	/* Bigger than the default 64 KiB: fewer calls per megabyte. Not
	 * fatal when the per-user pipe allowance says no. */
	(void)fcntl(d->pipe[1], F_SETPIPE_SZ, PIPEPOOL_PIPE_SIZE);
	return 0;
}

void
pipepool_put(struct session_side *d)
{
	if (d->pipe[0] == -1)
		return;
	if (d->piped == 0 && !broken) {
		pool[npool][0] = d->pipe[0];
		pool[npool][1] = d->pipe[1];
		npool++;
	} else {
		/* Bytes still in it belong to a closing socket. */
		close(d->pipe[0]);
		close(d->pipe[1]);
		nopen--;
	}
	d->pipe[0] = d->pipe[1] = -1;
	d->piped = 0;
}

void
pipepool_disable(void)
{
	broken = true;
	while (npool > 0) {
		npool--;
		close(pool[npool][0]);
		close(pool[npool][1]);
		nopen--;
	}
}
