/* SPDX-License-Identifier: MIT */
/*
 * fdstore: restarts that keep the listeners. The master keeps every
 * listening socket in systemd's file descriptor store (FDSTORE=1, named
 * after its bind address) and, at its next start, takes back what systemd
 * passes (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID): runtime_new() then uses
 * the socket whose address a bind has instead of binding it, so the
 * connections that queued meanwhile are served. Sockets no bind wants are
 * closed, missing ones bound.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/master/master_int.h"
#include "core/master/notify.h"
#include "core/runtime.h"

#define LISTEN_FDS_START	3

void
master_listen_fds(void)
{
	const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	char *end, *list = NULL, *next = NULL;
	long n, p;

	if (pid == NULL || nfds == NULL)
		return;
	errno = 0;
	p = strtol(pid, &end, 10);
	if (errno != 0 || *end != '\0' || p != (long)getpid()) {
		/* For another process (the variables leaked to us). */
		goto out;
	}
	n = strtol(nfds, &end, 10);
	if (errno != 0 || *end != '\0' || n < 0 || n > 4096) {
		log_warnx("LISTEN_FDS=\"%s\" is not a count; ignored", nfds);
		goto out;
	}
	if (names != NULL && (list = strdup(names)) != NULL)
		next = list;
	log_info("systemd handed over %ld socket(s)", n);
	for (long i = 0; i < n; i++) {
		char *name = next != NULL ? strsep(&next, ":") : NULL;
		int fd = LISTEN_FDS_START + (int)i;

		(void)runtime_inherit(fd, name != NULL && name[0] != '\0' ?
		    name : "unnamed");
	}
	free(list);
out:
	/* Not for the children, nor for an exec at an upgrade. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

void
master_fdstore_forget(const char *name)
{
	/* A name the store cannot hold was never stored under it. */
	if (!notify_wanted() || strchr(name, ':') != NULL || name[0] == '\0')
		return;
	if (notify_remove_fd(name) == -1)
		log_warn("sd_notify FDSTOREREMOVE %s", name);
}

/* One FDSTORE message; the first one also carries `with` (READY=1). */
static int
master_fdstore_one(const struct rt_bind *b, const char *with)
{
	char name[128], state[512];

	runtime_bind_name(b->addr, name, sizeof(name));
	snprintf(state, sizeof(state), "%s%sFDSTORE=1\nFDNAME=%s",
	    with != NULL ? with : "", with != NULL ? "\n" : "", name);
	return notify_send_fd(state, b->fd);
}

void
master_notify_ready(const struct runtime *rt, const char *state, bool all)
{
	static bool warned;
	const char *with = state;
	int bad = 0;

	for (size_t i = 0; notify_wanted() && i < rt->nlisteners; i++)
		for (size_t j = 0; j < rt->listeners[i].nbinds; j++) {
			const struct rt_bind *b = &rt->listeners[i].binds[j];

			/* A reload stores only what it bound: the others are
			 * in the store already. */
			if (b->fd == -1 || (!all && b->inherited))
				continue;
			if (master_fdstore_one(b, with) == -1) {
				if (with != NULL)
					log_warn("sd_notify READY=1");
				bad++;
			}
			with = NULL;
		}
	if (with != NULL && notify_send(with) == -1)
		log_warn("sd_notify READY=1");
	if (bad > 0 && !warned) {
		warned = true;
		log_warn("sd_notify FDSTORE: %d message(s) not sent; a restart "
		    "will bind the listeners afresh", bad);
	}
}

void
master_fdstore_remove(const struct runtime *old)
{
	char name[128];

	if (!notify_wanted())
		return;
	/* After runtime_commit(): old holds only the sockets rt dropped. */
	for (size_t i = 0; i < old->nlisteners; i++)
		for (size_t j = 0; j < old->listeners[i].nbinds; j++) {
			const struct rt_bind *b = &old->listeners[i].binds[j];

			if (b->fd == -1)
				continue;
			runtime_bind_name(b->addr, name, sizeof(name));
			if (notify_remove_fd(name) == -1)
				log_warn("sd_notify FDSTOREREMOVE %s", name);
		}
}
