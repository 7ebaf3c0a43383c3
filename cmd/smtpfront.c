/* SPDX-License-Identifier: MIT */
/*
 * smtpfront: command line, config load and hand-off to the master.
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "config/config.h"
#include "core/log.h"
#include "core/master/master.h"
#include "core/shm.h"
#include "core/worker/fdplan.h"

#define DEFAULT_CONFIG "/etc/smtpfront/smtpfront.yaml"

static void
usage(FILE *out)
{
	fprintf(out, "usage: smtpfront [-c FILE] [-t | -n] [-p PIDFILE] [-V] "
	    "[-h]\n"
	    "  -c FILE       configuration (default " DEFAULT_CONFIG ")\n"
	    "  -t            check the configuration and exit\n"
	    "  -n            print the effective configuration, defaults\n"
	    "                included, and exit\n"
	    "  -p PIDFILE    write the master's pid to PIDFILE\n"
	    "  -V, --version print the version and exit\n"
	    "  -h, --help    print this help and exit\n");
}

/* What start-up and every reload need must fit what the master can have. */
static int
check_limits(const struct config *cfg, struct cfg_diag *diag)
{
	size_t need = shm_config_bytes(cfg), servers = 0;

	for (size_t i = 0; i < cfg->npools; i++)
		servers += cfg->pools[i].nservers;
	if (need <= SHM_RESERVE_MAX)
		return 0;
	cfg_diag_error_at(diag, &cfg->workers_pos, "%u workers with %zu "
	    "servers need %zu MiB of shared memory during a reload, more than "
	    "the %zu MiB smtpfront can reserve: use fewer workers or servers",
	    cfg->workers, servers, need >> 20, SHM_RESERVE_MAX >> 20);
	return -1;
}

/*
 * Workers and the health process that would run as root (no user:, or a
 * user with uid 0): a warning from -t (whoever runs it: the service starts
 * as root) and at start when started as root (issue 20). NULL when none.
 */
static const char *
root_workers_warning(const struct config *cfg, bool test_only)
{
	const struct passwd *pw;

	if (cfg->user[0] == '\0') {
		if (!test_only && geteuid() != 0)
			return NULL;
		return test_only ? "no user: key: the workers and the health "
		    "process of a smtpfront started as root stay root; set "
		    "user: to an unprivileged account (e.g. user: smtpfront)" :
		    "no user: key: the workers and the health process run as "
		    "root; set user: to an unprivileged account (e.g. user: "
		    "smtpfront)";
	}
	pw = getpwnam(cfg->user);
	if (pw != NULL && pw->pw_uid == 0)
		return "user: names a uid 0 account: the workers and the "
		    "health process run as root; name an unprivileged account";
	return NULL;
}

static int
write_pidfile(const char *path)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fprintf(f, "%ld\n", (long)getpid());
	return fclose(f) == 0 ? 0 : -1;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_CONFIG, *pidfile = NULL;
	struct cfg_diag diag = { 0 };
	struct config *cfg;
	bool test_only = false, dump = false;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "c:tnp:Vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = true;
			break;
		case 'n':
			/* -n checks as -t does, then prints */
			test_only = dump = true;
			break;
		case 'p':
			pidfile = optarg;
			break;
		case 'V':
			printf("smtpfront %s\n", SMTPFRONT_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	master_set_argv(argv);
	/* The new image of an upgrade: the master's state is handed over;
	 * the config is read there (a bad one keeps the running workers). */
	if (!test_only && getenv(MASTER_HANDOVER_ENV) != NULL) {
		log_init("smtpfront", false, LOG_MAIL, CFG_LOG_INFO);
		if (pidfile != NULL && write_pidfile(pidfile) == -1)
			log_warn("cannot write pid file %s", pidfile);
		rc = master_run_upgraded(path);
		if (pidfile != NULL)
			unlink(pidfile);
		return rc;
	}

	/* The children switch to user/group: a name that does not exist
	 * must stop the start (and fail -t), not surface later as workers
	 * that exit. */
	cfg = cfg_load_file(path, &diag);
	if (cfg != NULL && (cfg_check_accounts(cfg, &diag) == -1 ||
	    check_limits(cfg, &diag) == -1)) {
		cfg_free(cfg);
		cfg = NULL;
	}
	cfg_diag_print(&diag, stderr);
	cfg_diag_free(&diag);
	if (cfg == NULL) {
		if (test_only)
			fprintf(stderr, "smtpfront: %s: configuration is "
			    "invalid\n", path);
		return 1;
	}
	if (test_only) {
		char msg[512];

		/* The master raises its soft limit to the hard one. */
		(void)fdplan_check(cfg, fdplan_limit(true), msg, sizeof(msg));
		if (msg[0] != '\0')
			fprintf(stderr, "%s: warning: %s\n", path, msg);
		if (root_workers_warning(cfg, true) != NULL)
			fprintf(stderr, "%s: warning: %s\n", path,
			    root_workers_warning(cfg, true));
		if (dump) {
			cfg_dump(cfg, stdout);
			cfg_free(cfg);
			return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
		}
		fprintf(stderr, "smtpfront: %s: configuration is valid\n",
		    path);
		cfg_free(cfg);
		return 0;
	}

	log_init("smtpfront", false, cfg->log.facility, cfg->log.level);
	log_setup(cfg);
	if (root_workers_warning(cfg, false) != NULL)
		log_warnx("%s", root_workers_warning(cfg, false));
	if (pidfile != NULL && write_pidfile(pidfile) == -1)
		fatal("cannot write pid file %s", pidfile);
	rc = master_run(cfg);		/* takes cfg */
	if (pidfile != NULL)
		unlink(pidfile);
	return rc;
}
