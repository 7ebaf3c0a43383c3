/* SPDX-License-Identifier: MIT */
/*
 * stop: SIGTERM/SIGINT: children told to finish, queued connections
 * answered with the shutdown 421, a deadline after which they are killed.
 */
#include <sys/socket.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/master/notify.h"
#include "core/net.h"
#include "core/master/master_int.h"

/* ------------------------------------------------------------ stop */

/* Connections still queued on a listener get the shutdown 421. */
static void
master_drain_backlog(struct master *m)
{
	char reply[400];
	int n, fd;

	n = snprintf(reply, sizeof(reply), "421 4.3.2 %s Service shutting "
	    "down\r\n", m->rt->cfg->hostname);
	for (size_t i = 0; i < m->rt->nlisteners; i++) {
		struct rt_listener *l = &m->rt->listeners[i];

		for (size_t j = 0; j < l->nbinds; j++) {
			if (l->binds[j].fd == -1)
				continue;
			for (;;) {
				struct sockaddr_storage peer;
				socklen_t len = sizeof(peer);
				char client[NET_ADDR_TEXT];

				fd = accept4(l->binds[j].fd,
				    (struct sockaddr *)&peer, &len,
				    SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (fd == -1)
					break;
				if (l->cfg->mode == CFG_MODE_SMTP)
					(void)!write(fd, reply, (size_t)n);
				shutdown(fd, SHUT_WR);
				close(fd);
				net_addr_fmt((struct sockaddr *)&peer, client,
				    sizeof(client));
				log_info("session client=%s listener=%s "
				    "server=- backend=- attempts=0 "
				    "result=shutdown", client, l->cfg->name);
			}
			close(l->binds[j].fd);
			l->binds[j].fd = -1;
		}
	}
}

void
master_on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;

	log_warnx("children still running after shutdown_timeout; killing");
	master_kill_all(m, SIGKILL);
}

void
master_stop(struct master *m, int signo)
{
	unsigned ms = m->rt->cfg->shutdown_timeout_ms + STOP_GRACE_MS;

	if (m->stopping) {
		log_info("received %s again: exiting now", strsignal(signo));
		master_kill_all(m, SIGKILL);
		event_base_loopbreak(m->base);
		return;
	}
	log_info("received %s: stopping (sessions may take up to %u ms)",
	    strsignal(signo), m->rt->cfg->shutdown_timeout_ms);
	if (m->reload.phase != RELOAD_IDLE) {
		master_reload_error(m, "smtpfront is stopping");
		master_reload_fail(m);
	}
	m->stopping = true;
	if (notify_send("STOPPING=1") == -1)
		log_warn("sd_notify STOPPING=1");
	/* Workers not forked yet never will be. */
	for (size_t i = 0; i < m->nworkers; i++)
		if (m->workers[i] != NULL && m->workers[i]->start_rt != NULL)
			master_worker_free(m, m->workers[i]);
	master_kill_all(m, SIGTERM);
	master_drain_backlog(m);
	master_timer_add(m->kill_timer, ms);
	if (!master_children_alive(m))
		event_base_loopbreak(m->base);
}
