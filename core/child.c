/* SPDX-License-Identifier: MIT */
/*
 * child: common start-up of forked children. Signals stay blocked (the
 * master blocked them before fork) and are read from a signalfd, so a
 * signal is an ordinary event and no handler runs inside libevent.
 */
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/child.h"
#include "core/log.h"

/* This child's end of its channel to the master (-1: none yet). */
static int child_channel = -1;

void
child_close_fds(const int *keep, size_t nkeep)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int *fds = NULL;
	size_t n = 0, cap = 0;

	if (d == NULL) {
		/* No /proc: try every descriptor the limit allows. */
		long max = sysconf(_SC_OPEN_MAX);

		for (long fd = 3; fd < (max > 0 ? max : 1024); fd++) {
			bool wanted = false;

			for (size_t i = 0; i < nkeep; i++)
				wanted |= keep[i] == fd;
			if (!wanted)
				close((int)fd);
		}
		return;
	}
	/* Collect first: closing while reading the directory would change
	 * what it lists. */
	while ((de = readdir(d)) != NULL) {
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		bool wanted = false;

		if (*end != '\0' || end == de->d_name || fd <= 2 ||
		    fd == dirfd(d))
			continue;
		for (size_t i = 0; i < nkeep; i++)
			wanted |= keep[i] == fd;
		if (wanted)
			continue;
		if (n == cap) {
			int *nf = realloc(fds, (cap = cap ? cap * 2 : 32) *
			    sizeof(*fds));

			if (nf == NULL)
				break;
			fds = nf;
		}
		fds[n++] = (int)fd;
	}
	closedir(d);
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
}

/* Does the process have exactly the supplementary groups {gid} (or none)? */
static bool
child_groups_are(gid_t gid)
{
	gid_t groups[64];
	int n = getgroups(64, groups);

	if (n == -1)
		return false;
	for (int i = 0; i < n; i++)
		if (groups[i] != gid)
			return false;
	return true;
}

int
child_drop_privileges(const struct config *cfg)
{
	struct passwd *pw = NULL;
	struct group *gr = NULL;
	uid_t uid;
	gid_t gid;

	if (cfg->user[0] == '\0' && cfg->group[0] == '\0')
		return 0;
	if (cfg->user[0] != '\0' && (pw = getpwnam(cfg->user)) == NULL) {
		log_errx("unknown user \"%s\"", cfg->user);
		return -1;
	}
	if (cfg->group[0] != '\0' && (gr = getgrnam(cfg->group)) == NULL) {
		log_errx("unknown group \"%s\"", cfg->group);
		return -1;
	}
	gid = gr != NULL ? gr->gr_gid : pw != NULL ? pw->pw_gid : getegid();
	uid = pw != NULL ? pw->pw_uid : geteuid();
	/*
	 * Always, even when the gid already matches: a root master started
	 * with that gid would otherwise pass its own supplementary groups on.
	 * Only a process that cannot change groups (not root, and already
	 * the configured user and group) keeps the ones it has: they are
	 * that user's own.
	 */
	if (setgroups(1, &gid) == -1) {
		bool same = getuid() == uid && geteuid() == uid &&
		    getgid() == gid && getegid() == gid;

		if (errno != EPERM || !same) {
			log_err("setgroups(%u)", (unsigned)gid);
			return -1;
		}
		log_debug("not privileged to set supplementary groups; keeping "
		    "those of user %u", (unsigned)uid);
	} else if (!child_groups_are(gid)) {
		log_errx("setgroups(%u) left other supplementary groups",
		    (unsigned)gid);
		return -1;
	}
	if (getegid() != gid || getgid() != gid) {
		if (setresgid(gid, gid, gid) == -1) {
			log_err("setresgid(%u)", (unsigned)gid);
			return -1;
		}
	}
	if (geteuid() != uid || getuid() != uid) {
		if (setresuid(uid, uid, uid) == -1) {
			log_err("setresuid(%u)", (unsigned)uid);
			return -1;
		}
	}
	return 0;
}

struct event_base *
child_event_base(void)
{
	struct event_config *ec;
	struct event_base *base;

	ec = event_config_new();
	if (ec == NULL)
		fatalx("event_config_new");
	/* Batch epoll changes: a session toggles reading often. */
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (base == NULL)
		fatalx("event_base_new");
	return base;
}

static void
child_on_signal(evutil_socket_t fd, short what, void *arg)
{
	struct child_events *ce = arg;
	struct signalfd_siginfo si;

	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			ce->on_stop(ce->arg);
	}
}

static void
child_on_parent(evutil_socket_t fd, short what, void *arg)
{
	struct child_events *ce = arg;
	char buf[64];
	ssize_t n;

	n = read(fd, buf, sizeof(buf));
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
		/* The master is gone: stop like on SIGTERM. */
		event_del(ce->parent_ev);
		ce->on_stop(ce->arg);
	}
}

int
child_events_init(struct child_events *ce, struct event_base *base,
    int parent_fd, void (*on_stop)(void *), void *arg)
{
	sigset_t set;

	ce->on_stop = on_stop;
	ce->arg = arg;
	child_channel = parent_fd;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		return -1;
	ce->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (ce->sigfd == -1)
		return -1;
	ce->sig_ev = event_new(base, ce->sigfd, EV_READ | EV_PERSIST,
	    child_on_signal, ce);
	ce->parent_ev = event_new(base, parent_fd, EV_READ | EV_PERSIST,
	    child_on_parent, ce);
	if (ce->sig_ev == NULL || ce->parent_ev == NULL ||
	    event_add(ce->sig_ev, NULL) == -1 ||
	    event_add(ce->parent_ev, NULL) == -1)
		return -1;
	return 0;
}

void
child_events_free(struct child_events *ce)
{
	if (ce->sig_ev != NULL)
		event_free(ce->sig_ev);
	if (ce->parent_ev != NULL)
		event_free(ce->parent_ev);
	if (ce->sigfd > 0)
		close(ce->sigfd);
}

/* The test hook of child_ready(): what the file says, or NULL. Read once,
 * before the sandbox forbids opening files. */
static const char *
child_test_start_mode(void)
{
	const char *path = getenv("SMTPFRONT_TEST_WORKER_START");
	static char word[16];
	static bool read;
	FILE *f;

	if (read)
		return word[0] != '\0' ? word : NULL;
	read = true;
	word[0] = '\0';
	if (path == NULL || path[0] == '\0')
		return NULL;
	f = fopen(path, "re");
	if (f == NULL)
		return NULL;
	if (fscanf(f, "%15s", word) != 1)
		word[0] = '\0';
	fclose(f);
	return word[0] != '\0' ? word : NULL;
}

int
child_sandbox(const struct config *cfg, enum sandbox_role role, int parent_fd)
{
	(void)child_test_start_mode();
	if (!cfg->sandbox || sandbox_unavailable() != NULL)
		return 0;	/* the master said so at start */
	if (sandbox_enter(role, parent_fd) == -1) {
		log_errx("sandbox: the %s cannot run sandboxed here; "
		    "sandbox: false runs it without", sandbox_role_names[role]);
		return -1;
	}
	return 0;
}

void
child_ready(void)
{
	const char *mode = child_test_start_mode();
	char msg = CHILD_MSG_READY;

	if (mode != NULL && (strcmp(mode, "exit") == 0 ||
	    strcmp(mode, "config") == 0)) {
		log_warnx("test hook: worker exits at start%s", mode[0] == 'c' ?
		    " as if it failed on its configuration" : "");
		/* _exit: nothing of this process is worth cleaning up, and
		 * a leak report would only be noise. */
		_exit(mode[0] == 'c' ? CHILD_EXIT_CONFIG : 1);
	}
	if (mode != NULL && strcmp(mode, "stall") == 0) {
		log_warnx("test hook: worker never says it is ready");
		return;
	}
	if (child_channel == -1)
		return;
	if (send(child_channel, &msg, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1)
		log_warn("cannot tell the master this worker is ready");
}
