#!/bin/sh
# Install what smtpfront needs to build and test, from Debian's archive.
# Safe to run again: it installs only what is missing.
set -eu
pkgs="meson ninja-build gcc pkg-config libevent-dev libyaml-dev check
      libsubunit-dev python3 postfix haproxy nginx-light libnginx-mod-stream procps
      iproute2 netcat-openbsd"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: need root to install:$missing" >&2
	exit 1
fi
echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Debian starts these on install where an init system runs; the tests run
# their own private instances.
for s in postfix haproxy nginx; do
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl disable --now "$s" >/dev/null 2>&1 || true
	fi
done
