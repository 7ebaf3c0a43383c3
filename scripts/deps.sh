#!/bin/sh
# SPDX-License-Identifier: MIT
# Install from Debian's archive what a task needs, and only what is missing.
#
#   scripts/deps.sh [build]  build smtpfront (and run the demo): compiler,
#                            meson, ninja, libevent, libyaml, libseccomp,
#                            Check, python3, netcat-openbsd for the demo's
#                            hint. No service.
#   scripts/deps.sh pkg      build + what the .deb/.rpm builds and their
#                            checks use: debhelper, lintian, rpm, rpmlint,
#                            mandoc, systemd (systemd-analyze only),
#                            systemd-container and debootstrap (the
#                            real-systemd test boots a Debian 12 root).
#   scripts/deps.sh test     pkg + what the test suite and bench --quick run:
#                            postfix, haproxy, nginx-light with its stream
#                            module, strace, valgrind, clang with libFuzzer,
#                            prometheus (promtool and a throwaway server),
#                            fail2ban (postfix_fail2ban.py runs its server),
#                            gdb (the sandbox test makes a worker misbehave).
#   scripts/deps.sh prometheus  prometheus only (what the metrics tests run).
#
# Test packages are installed without starting their services: a
# policy-rc.d that denies every start exists only for that apt run (one
# that was there before is put back). Nothing that runs is stopped or
# disabled. Debian enables installed services for the next boot; postfix is
# installed with "No configuration" (no main.cf: it serves nothing).
# Postfix is never installed where another MTA (mail-transport-agent, e.g.
# exim4) is: apt would remove that MTA. The Postfix tests skip instead.
# Any other install that would remove a package is refused.
set -eu

mode=${1:-build}
build="gcc pkg-config meson ninja-build libevent-dev libyaml-dev
       libseccomp-dev check libsubunit-dev python3 netcat-openbsd"
pkg="dpkg-dev debhelper fakeroot lintian rpm rpmlint cpio mandoc systemd
     systemd-container debootstrap"
test="postfix haproxy nginx-light libnginx-mod-stream strace procps iproute2
      valgrind clang libclang-rt-14-dev prometheus fail2ban gdb"

case $mode in
build) want=$build ;;
pkg) want="$build $pkg" ;;
test) want="$build $pkg $test" ;;
prometheus) want="prometheus" ;;
-h | --help)
	sed -n '3,27p' "$0" | sed 's/^# \{0,1\}//'
	exit 0 ;;
*)
	echo "usage: $0 [build|pkg|test|prometheus]" >&2
	exit 2 ;;
esac

installed() {
	dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'
}

# An installed package that is this host's MTA, other than postfix.
other_mta() {
	dpkg-query -W -f='${db:Status-Abbrev}\t${Package}\t${Provides}\n' \
	    2>/dev/null | awk -F '\t' '$1 ~ /^ii/ && $2 != "postfix" &&
	    $3 ~ /(^|[ ,])mail-transport-agent([ ,(]|$)/ { print $2; exit }'
}

missing=""
for p in $want; do
	case $p in
	postfix)
		installed postfix && continue
		mta=$(other_mta)
		if [ -n "$mta" ]; then
			echo "deps: not installing postfix: $mta is this host's MTA and" \
			    "installing postfix would remove it. The Postfix tests and" \
			    "bench --quick will be skipped." >&2
			continue
		fi ;;
	nginx-light)
		# any nginx flavour will do (nginx-full, -extras conflict with it)
		if installed nginx-light || installed nginx-core ||
		    installed nginx-full || installed nginx-extras; then
			continue
		fi ;;
	esac
	installed "$p" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: need root to install:$missing" >&2
	exit 1
fi
echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q

# Refuse anything that would remove a package (an MTA, a web server...).
# shellcheck disable=SC2086
removed=$(apt-get -s install --no-install-recommends $missing |
    sed -n 's/^Remv \([^ ]*\).*/\1/p' | tr '\n' ' ')
if [ -n "$removed" ]; then
	echo "deps: installing$missing would remove: $removed" >&2
	echo "deps: refusing; install what you need by hand" >&2
	exit 1
fi

case " $missing " in
*" postfix "*)
	# No main.cf: the tests run their own instances (postfix -c DIR), and a
	# host that had no MTA does not become an internet-facing one at boot.
	echo "postfix postfix/main_mailer_type select No configuration" |
	    debconf-set-selections ;;
esac

policy=/usr/sbin/policy-rc.d
saved=""
restore_policy() {
	rm -f "$policy"
	if [ -n "$saved" ]; then
		mv -f "$saved" "$policy"
		saved=""
	fi
}
if [ -e "$policy" ] || [ -L "$policy" ]; then
	saved=$(mktemp "$policy.deps.XXXXXX")
	mv -f "$policy" "$saved"
fi
trap 'restore_policy' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
printf '#!/bin/sh\n# scripts/deps.sh: no service starts during this apt run\nexit 101\n' \
    >"$policy"
chmod 755 "$policy"
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
restore_policy
trap - EXIT INT TERM
echo "deps: done; no service was started. Debian enables installed services" \
    "for the next boot (the tests never use those instances)."
