#!/bin/sh
# SPDX-License-Identifier: MIT
# Copy the source tree (what git tracks plus new files it does not ignore;
# without git: everything but build directories) into DEST, for the
# package builds. usage: packaging/lay-source.sh DEST
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DEST" >&2; exit 2; }
dest=$1
cd "$(dirname "$0")/.."
mkdir -p "$dest"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# --ignore-failed-read: a tracked file deleted in the work tree is
	# left out, as it would be from a commit of that tree.
	git ls-files -z --cached --others --exclude-standard |
		tar --null -T - --ignore-failed-read -cf - 2>/dev/null |
		tar -C "$dest" -xf -
else
	tar --exclude='./build*' --exclude='./.git' -cf - . |
		tar -C "$dest" -xf -
fi
[ -f "$dest/meson.build" ] || { echo "lay-source: no meson.build copied" >&2; exit 1; }
