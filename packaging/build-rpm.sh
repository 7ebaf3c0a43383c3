#!/bin/sh
# SPDX-License-Identifier: MIT
# Build the .rpm: a tarball of the source tree (the unit and the default
# config inside it), then rpmbuild -bb with packaging/rpm/smtpfront.spec in
# a temporary _topdir. The packages land in OUTDIR (default build-pkg/rpm).
# On a host whose rpm database does not hold the BuildRequires (Debian's
# rpm), rpmbuild runs with --nodeps: dpkg has them.
# usage: packaging/build-rpm.sh [OUTDIR]
set -eu
cd "$(dirname "$0")/.."
out=${1:-build-pkg/rpm}
for tool in rpmbuild rpmspec meson python3 tar; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "build-rpm: $tool not found; install the packaging tools:" \
		    "scripts/deps.sh pkg" >&2
		exit 1
	fi
done
spec=packaging/rpm/smtpfront.spec
version=$(packaging/version.sh)
specversion=$(rpmspec -q --srpm --qf '%{version}' "$spec")
if [ "$specversion" != "$version" ]; then
	# advise for the newer of the two: a release bumps both
	newer=$(printf '%s\n%s\n' "$specversion" "$version" | sort -V | tail -n 1)
	if [ "$newer" = "$specversion" ]; then
		echo "build-rpm: $spec is at $specversion but meson.build says" \
		    "$version: bump meson.build's version: to $specversion" >&2
	else
		echo "build-rpm: $spec is at $specversion but meson.build says" \
		    "$version: update Version: and %changelog to $version" >&2
	fi
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/smtpfront-rpm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$tmp/SOURCES" "$tmp/src"
packaging/lay-source.sh "$tmp/src/smtpfront-$version"
tar -C "$tmp/src" -czf "$tmp/SOURCES/smtpfront-$version.tar.gz" \
    "smtpfront-$version"

nodeps=
if ! rpm -q --whatprovides 'pkgconfig(yaml-0.1)' >/dev/null 2>&1; then
	nodeps=--nodeps
	echo "build-rpm: BuildRequires are not in this host's rpm database:" \
	    "rpmbuild --nodeps"
fi
# Debian's rpm runs its brp-* helpers with /bin/sh, which is dash there,
# and brp-compress needs bash ("read -d"): man pages stayed uncompressed.
brp=
if [ "$(basename "$(readlink -f /bin/sh)")" = dash ] && command -v bash >/dev/null; then
	brp="bash $(rpm --eval '%{_rpmconfigdir}')/brp-compress %{?_prefix}"
fi
echo "build-rpm: building smtpfront $version in $tmp"
# shellcheck disable=SC2086
rpmbuild -bb $nodeps --define "_topdir $tmp" \
    --define "packager $(sed -n 's/^Maintainer: //p' packaging/debian/control)" \
    ${brp:+--define "__brp_compress $brp"} "$spec"

mkdir -p "$out"
found=
for f in "$tmp"/RPMS/*/smtpfront-*.rpm; do
	[ -e "$f" ] || continue
	cp "$f" "$out/"
	found="$found $out/$(basename "$f")"
done
[ -n "$found" ] || { echo "build-rpm: no package was built" >&2; exit 1; }
echo "build-rpm:$found"
