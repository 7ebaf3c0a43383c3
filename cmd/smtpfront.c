/* SPDX-License-Identifier: MIT */
/*
 * smtpfront: command line, config load and hand-off to the master.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "core/fdplan.h"
#include "core/log.h"
#include "core/master.h"

#define DEFAULT_CONFIG "/etc/smtpfront/smtpfront.yaml"

static void
usage(FILE *out)
{
	fprintf(out, "usage: smtpfront [-c FILE] [-t] [-p PIDFILE] [-V]\n"
	    "  -c FILE     configuration (default " DEFAULT_CONFIG ")\n"
	    "  -t          check the configuration and exit\n"
	    "  -p PIDFILE  write the master's pid to PIDFILE\n"
	    "  -V          print the version and exit\n");
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

/* The children switch to user/group: a name that does not exist must stop
 * the start (and fail -t), not surface later as workers that exit. */
static int
check_accounts(const struct config *cfg, const char *path)
{
	int rc = 0;

	if (cfg->user[0] != '\0' && getpwnam(cfg->user) == NULL) {
		fprintf(stderr, "%s: user \"%s\" does not exist\n", path,
		    cfg->user);
		rc = -1;
	}
	if (cfg->group[0] != '\0' && getgrnam(cfg->group) == NULL) {
		fprintf(stderr, "%s: group \"%s\" does not exist\n", path,
		    cfg->group);
		rc = -1;
	}
	if (cfg->control.group[0] != '\0' &&
	    getgrnam(cfg->control.group) == NULL) {
		fprintf(stderr, "%s: control.group \"%s\" does not exist\n",
		    path, cfg->control.group);
		rc = -1;
	}
	return rc;
}

int
main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG, *pidfile = NULL;
	struct cfg_diag diag = { 0 };
	struct config *cfg;
	bool test_only = false;
	int ch, rc;

	while ((ch = getopt(argc, argv, "c:tp:Vh")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = true;
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

	cfg = cfg_load_file(path, &diag);
	cfg_diag_print(&diag, stderr);
	cfg_diag_free(&diag);
	if (cfg != NULL && check_accounts(cfg, path) == -1) {
		cfg_free(cfg);
		cfg = NULL;
	}
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
		fprintf(stderr, "smtpfront: %s: configuration is valid\n",
		    path);
		cfg_free(cfg);
		return 0;
	}

	log_init("smtpfront", cfg->log.target == CFG_LOG_SYSLOG,
	    cfg->log.facility, cfg->log.level);
	if (pidfile != NULL && write_pidfile(pidfile) == -1)
		fatal("cannot write pid file %s", pidfile);
	rc = master_run(cfg);		/* takes cfg */
	if (pidfile != NULL)
		unlink(pidfile);
	return rc;
}
