/* SPDX-License-Identifier: MIT */
/*
 * config: YAML file -> an immutable, validated struct config, or a list of
 * diagnostics with FILE:LINE:COLUMN. Knows nothing of processes or sockets
 * beyond address resolution. Every duration is in milliseconds.
 */
#ifndef SMTPFRONT_CONFIG_H
#define SMTPFRONT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

#define CFG_NAME_MAX 64

enum cfg_balance {
	CFG_BALANCE_ROUNDROBIN,
	CFG_BALANCE_LEASTCONN,
	CFG_BALANCE_SOURCE,
	CFG_BALANCE_FIRST,
};
extern const char *const cfg_balance_names[];

enum cfg_proxy {
	CFG_PROXY_NONE,
	CFG_PROXY_V1,
	CFG_PROXY_V2,
};
extern const char *const cfg_proxy_names[];	/* "none", "v1", "v2" */

enum cfg_listener_mode {
	CFG_MODE_SMTP,
	CFG_MODE_TLS,
};
extern const char *const cfg_mode_names[];

enum cfg_check {
	CFG_CHECK_SMTP,
	CFG_CHECK_CONNECT,
};
extern const char *const cfg_check_names[];

enum cfg_log_target {
	CFG_LOG_STDERR,
	CFG_LOG_SYSLOG,
};

enum cfg_log_level {		/* ordered: a level logs itself and all below */
	CFG_LOG_ERROR,
	CFG_LOG_WARNING,
	CFG_LOG_INFO,
	CFG_LOG_DEBUG,
};
extern const char *const cfg_log_level_names[];

enum cfg_log_sessions {		/* which session lines are logged */
	CFG_LOG_SESSIONS_ALL,
	CFG_LOG_SESSIONS_FAILED,	/* every result but ok */
	CFG_LOG_SESSIONS_NONE,
};
extern const char *const cfg_log_sessions_names[];

/* A resolved socket address plus its canonical text "[ip]:port". */
struct cfg_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[64];
};

struct cfg_cidr {
	int family;			/* AF_INET or AF_INET6 */
	unsigned char addr[16];		/* network byte order, host bits zeroed */
	unsigned prefix;
};

struct cfg_server {
	char name[CFG_NAME_MAX + 1];
	struct cfg_addr address;
	char address_spec[256];		/* as written, for re-resolution / display */
	unsigned weight;		/* default 1; 0 = no new sessions */
	unsigned max_connections;	/* 0 = no limit */
	bool backup;
};

struct cfg_health {
	unsigned interval_ms;		/* default 2000 */
	unsigned timeout_ms;		/* default 10000 */
	unsigned rise;			/* default 2 */
	unsigned fall;			/* default 3 */
	char helo[256];			/* default: config hostname */
	enum cfg_check check;		/* default smtp */
};

struct cfg_pool {
	char name[CFG_NAME_MAX + 1];
	enum cfg_balance balance;	/* default roundrobin */
	unsigned prefix4;		/* source_prefix.ipv4, default 24 (0..32) */
	unsigned prefix6;		/* source_prefix.ipv6, default 64 (0..128) */
	enum cfg_proxy proxy;		/* default v2 */
	unsigned connect_timeout_ms;	/* default 5000 */
	unsigned greeting_timeout_ms;	/* default 30000 */
	unsigned server_timeout_ms;	/* default 600000 */
	unsigned retries;		/* default 2 */
	struct cfg_health health;
	struct cfg_server *servers;
	size_t nservers;
};

struct cfg_listener {
	char name[CFG_NAME_MAX + 1];
	struct cfg_addr *binds;
	size_t nbinds;
	char pool_name[CFG_NAME_MAX + 1];
	size_t pool;			/* index into config.pools */
	enum cfg_listener_mode mode;	/* default smtp */
	unsigned max_connections;	/* default 10000 */
	unsigned max_connections_per_client; /* default 0 */
	unsigned max_connection_rate_per_client; /* per minute, default 0 */
	struct cfg_cidr *client_limit_exceptions; /* the two above skip these */
	size_t nclient_limit_exceptions;
	struct cfg_cidr *deny;		/* refused with 554 5.7.1 */
	size_t ndeny;
	bool accept_proxy;		/* default false */
	struct cfg_cidr *trusted_proxies;
	size_t ntrusted_proxies;
	unsigned proxy_timeout_ms;	/* default 5000 */
	unsigned client_timeout_ms;	/* default 600000 */
};

/* Where a key's value was written (1-based; 0 = not in the file). */
struct cfg_pos {
	unsigned line, column;
};

/*
 * A host name in an address, left unresolved by a load in
 * CFG_RESOLVE_DEFER mode: the address it belongs to has len 0 and its text
 * is the name as written until cfg_host_apply() fills it in.
 */
struct cfg_host {
	char name[256];
	unsigned port;
	bool bind;			/* a listener's bind address (else a server's) */
	size_t list, item;		/* listener i bind j, or pool i server j */
	struct cfg_pos pos;
};
/* cfg_host.list of metrics.bind (a bind of no listener). */
#define CFG_HOST_METRICS	((size_t)-1)

struct config {
	char *path;			/* file it was loaded from */
	unsigned workers;		/* resolved: "auto" = CPUs usable (sched_getaffinity) */
	char user[64];			/* "" = no change */
	char group[64];			/* "" = no change */
	unsigned shutdown_timeout_ms;	/* default 60000 */
	char hostname[256];		/* default: FQDN of this host */
	char state_directory[256];	/* "" = none: runtime deny entries
					 * last until a restart */
	bool sandbox;			/* seccomp in children, default true */
	struct {
		enum cfg_log_target target;	/* default stderr */
		int facility;			/* syslog LOG_MAIL etc., default LOG_MAIL */
		enum cfg_log_level level;	/* default info */
		enum cfg_log_sessions sessions;	/* default all */
		char syslog_socket[108];	/* default /dev/log (sun_path) */
	} log;
	struct {
		char socket[108];	/* default /run/smtpfront/control.sock */
		unsigned mode;		/* default 0600 */
		char group[64];		/* default "" */
		/* May change state (the others that reach the socket may
		 * only read); "" = only root and the master's own uid. */
		char admin_group[64];	/* default "" */
	} control;
	struct {
		bool enabled;		/* metrics: given (default: none) */
		struct cfg_addr bind;	/* GET /metrics is served here */
	} metrics;
	struct cfg_listener *listeners;
	size_t nlisteners;
	struct cfg_pool *pools;
	size_t npools;
	/* Where some keys were written, for checks made after the load. */
	struct cfg_pos workers_pos, user_pos, group_pos, control_group_pos;
	struct cfg_pos control_admin_group_pos;
	struct cfg_pos state_directory_pos;
	struct cfg_pos metrics_pos;	/* metrics.bind */
	struct cfg_host *hosts;		/* CFG_RESOLVE_DEFER: names to resolve */
	size_t nhosts;
};

enum cfg_severity {
	CFG_ERROR,
	CFG_WARNING,
};

struct cfg_diag_entry {
	enum cfg_severity severity;
	unsigned line;			/* 1-based; 0 = not tied to a place */
	unsigned column;		/* 1-based */
	char message[256];
};

struct cfg_diag {
	char *file;			/* name used in printed messages */
	struct cfg_diag_entry *entries;
	size_t n;
	size_t nerrors;
	size_t nwarnings;
};

/*
 * Load and validate. On success return a config (warnings may be in diag).
 * On any error return NULL; diag holds every error found (after a YAML syntax
 * error, only that one). diag must be zero-initialised by the caller and
 * released with cfg_diag_free().
 */
struct config *cfg_load_file(const char *path, struct cfg_diag *diag)
    __attribute__((warn_unused_result));
/* The same from a string; `name` stands for the file name in diagnostics. */
struct config *cfg_load_string(const char *yaml, size_t len, const char *name,
    struct cfg_diag *diag) __attribute__((warn_unused_result));
void cfg_free(struct config *cfg);

/* Add an error at pos (line 0: not tied to a place), for checks made
 * outside config/ on a loaded config. */
void cfg_diag_error_at(struct cfg_diag *diag, const struct cfg_pos *pos,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Print each entry as "FILE:LINE:COLUMN: message" (warnings: "FILE:LINE:COLUMN: warning: message"). */
void cfg_diag_print(const struct cfg_diag *diag, FILE *out);
void cfg_diag_free(struct cfg_diag *diag);

/* The effective configuration as YAML that cfg_load_file() reads back:
 * every key, defaults included (smtpfront -n). */
void cfg_dump(const struct config *cfg, FILE *out);

/* Lookups for other modules. Return NULL / -1 when absent. */
const struct cfg_pool *cfg_pool_by_name(const struct config *cfg, const char *name);
const struct cfg_server *cfg_server_by_name(const struct cfg_pool *pool,
    const char *name);

/*
 * Host names in addresses (and the default hostname's FQDN lookup) go to the
 * resolver unless this is turned off (default on); off, only numeric
 * addresses load. For fuzzing and tests that must not touch DNS.
 */
void cfg_set_resolve(bool on);

enum cfg_resolve_mode {
	CFG_RESOLVE_NOW,		/* getaddrinfo during the load (default) */
	CFG_RESOLVE_NEVER,		/* only numeric addresses load */
	/*
	 * Names are listed in config.hosts for the caller to resolve (the
	 * master at reload, without blocking); the default hostname is the
	 * FQDN a NOW load in this process found, else the bare host name.
	 */
	CFG_RESOLVE_DEFER,
};
void cfg_set_resolve_mode(enum cfg_resolve_mode mode);

/* Resolve host h now (getaddrinfo, blocking: for a resolver process): 0 with
 * the address in *out, or -1 with the reason in err. */
int cfg_host_lookup(const struct cfg_host *h, struct cfg_addr *out,
    char *err, size_t errlen) __attribute__((warn_unused_result));
/*
 * Give cfg->hosts[i] its address `a`, or its failure `lookup_err` (a NULL
 * a). An error (the lookup's, or an address the key does not allow) goes
 * to diag at the name's line and column and returns -1.
 */
int cfg_host_apply(struct config *cfg, size_t i, const struct cfg_addr *a,
    const char *lookup_err, struct cfg_diag *diag);
/* After every host is applied: the checks that need addresses (a bind
 * address used twice). -1 with the errors in diag. */
int cfg_hosts_finish(struct config *cfg, struct cfg_diag *diag);

/*
 * The accounts the config names (user, group, control.group,
 * control.admin_group) exist; every
 * one that does not is an error at its line and column. Start-up and -t,
 * not reload (those keys need a restart anyway).
 */
int cfg_check_accounts(const struct config *cfg, struct cfg_diag *diag);

#endif
