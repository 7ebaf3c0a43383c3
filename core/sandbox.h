/* SPDX-License-Identifier: MIT */
/*
 * sandbox: the seccomp filter a worker or the health process puts on itself
 * once it runs unprivileged (SPEC.md "Processes"): an allowlist of the
 * system calls its loop makes. A forbidden call is reported to the master
 * on the child's channel (CHILD_MSG_SANDBOX), then the child dies of
 * SIGSYS.
 */
#ifndef SMTPFRONT_SANDBOX_H
#define SMTPFRONT_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sandbox_role {
	SANDBOX_WORKER,
	SANDBOX_HEALTH,
};
extern const char *const sandbox_role_names[];

/*
 * NULL when this build and run can install the filter; else why not: a
 * sanitizer build (its runtime reads /proc and files, and may run a
 * symbolizer, when it reports) or a run under valgrind (which makes system
 * calls of its own on the child's behalf).
 */
const char *sandbox_unavailable(void);

/*
 * Install the role's filter, with no_new_privs, in the calling process
 * (single-threaded). report_fd (or -1) is where a forbidden call is told:
 * CHILD_MSG_SANDBOX, then a struct sandbox_report. 0, or -1 logged.
 */
int sandbox_enter(enum sandbox_role role, int report_fd)
    __attribute__((warn_unused_result));

/* What the child sends after CHILD_MSG_SANDBOX: the call it was killed for. */
struct sandbox_report {
	uint32_t arch;			/* AUDIT_ARCH_* (siginfo si_arch) */
	int32_t nr;			/* system call number (si_syscall) */
};

/* The name of system call nr of arch ("#NR" when it has none), in buf. */
const char *sandbox_syscall_name(uint32_t arch, int32_t nr, char *buf,
    size_t len);

#endif
