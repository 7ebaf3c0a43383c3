#!/bin/sh
# SPDX-License-Identifier: MIT
# Build smtpfront and run it on a working demo, in the foreground:
# 127.0.0.1:2525 -> PROXY v2 -> the test backend on 127.0.0.1:10025, which
# answers with the client address the header carried. Installs only the
# build dependencies (scripts/deps.sh build): no MTA, no service.
# Ctrl-C or SIGTERM stops the backend and smtpfront it started.
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh build
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

backend=""
front=""
tmp=$(mktemp -d "${TMPDIR:-/tmp}/smtpfront-demo.XXXXXX")
stop() {
	trap - EXIT INT TERM
	# each was started in its own session: Ctrl-C reaches only this
	# script, which stops them once, in order
	[ -n "$front" ] && kill -TERM "$front" 2>/dev/null
	[ -n "$backend" ] && kill -TERM "$backend" 2>/dev/null
	wait
	rm -rf "$tmp"
}
trap 'stop' EXIT
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

# The demo's control socket goes in its own directory, not in the
# /run/smtpfront of an installed smtpfront.
cp examples/demo.yaml "$tmp/demo.yaml"
grep -q '^control:' "$tmp/demo.yaml" ||
	printf 'control:\n  socket: %s/control.sock\n' "$tmp" >>"$tmp/demo.yaml"
# Started as root, the workers and the health process would stay root
# without user: (smtpfront warns): they run as nobody, an account every
# system has; nothing is created or changed. Not root: they run as you.
if [ "$(id -u)" = 0 ]; then
	grep -q '^user:' "$tmp/demo.yaml" ||
		printf 'user: nobody\n' >>"$tmp/demo.yaml"
	runs_as="nobody (user: nobody; the master stays root)"
else
	runs_as="$(id -un) (not started as root)"
fi

setsid ./build/tests/smtpfront-test-backend --listen 127.0.0.1:10025 \
	--proxy v2 --name backend1 >/dev/null &
backend=$!
setsid ./build/cmd/smtpfront -c "$tmp/demo.yaml" &
front=$!
printf '%s\n' "smtpfront demo: connect to 127.0.0.1:2525 (Ctrl-C stops)" \
	"  the workers and the health process run as $runs_as" \
	"  e.g.  printf 'EHLO me\r\nQUIT\r\n' | nc -s 127.0.0.7 127.0.0.1 2525" \
	"        ./build/cmd/smtpfrontctl -s $tmp/control.sock status"
# returns when smtpfront exits, or at once on a signal (the trap runs)
wait "$front"
