#!/bin/sh
# SPDX-License-Identifier: MIT
# Build the .deb. debian/ stays out of the top level (packaging/debian/):
# this lays the source tree and packaging/debian/ out in a temporary
# directory, runs dpkg-buildpackage -us -uc -b there, and copies the
# .deb, .changes and .buildinfo to OUTDIR (default build-pkg/deb).
# usage: packaging/build-deb.sh [OUTDIR]
set -eu
cd "$(dirname "$0")/.."
out=${1:-build-pkg/deb}
for tool in dpkg-buildpackage dpkg-parsechangelog dh meson python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "build-deb: $tool not found; install the packaging tools:" \
		    "scripts/deps.sh pkg" >&2
		exit 1
	fi
done

version=$(packaging/version.sh)
debversion=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
upstream=${debversion#*:}
upstream=${upstream%-*}
if [ "$upstream" != "$version" ]; then
	# advise for the newer of the two: a release bumps both
	if dpkg --compare-versions "$upstream" gt "$version"; then
		echo "build-deb: packaging/debian/changelog is at $debversion but" \
		    "meson.build says $version: bump meson.build's version: to" \
		    "$upstream" >&2
	else
		echo "build-deb: packaging/debian/changelog is at $debversion but" \
		    "meson.build says $version: add a changelog entry for" \
		    "$version-1" >&2
	fi
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/smtpfront-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
tree="$tmp/smtpfront-$version"
packaging/lay-source.sh "$tree"
rm -rf "$tree/debian"
cp -R packaging/debian "$tree/debian"

echo "build-deb: building smtpfront $debversion in $tree"
(cd "$tree" && dpkg-buildpackage -us -uc -b)

mkdir -p "$out"
arch=$(dpkg --print-architecture)
for f in "$tmp"/smtpfront_"$debversion"_*.deb \
    "$tmp"/smtpfront-dbgsym_"$debversion"_*.deb \
    "$tmp"/smtpfront_"$debversion"_"$arch".changes \
    "$tmp"/smtpfront_"$debversion"_"$arch".buildinfo; do
	[ -e "$f" ] && cp "$f" "$out/"
done
deb="$out/smtpfront_${debversion}_$arch.deb"
[ -f "$deb" ] || { echo "build-deb: no $deb was built" >&2; exit 1; }
echo "build-deb: $deb"
