#!/bin/sh
# SPDX-License-Identifier: MIT
# Print the project version, as meson.build declares it: the one
# "smtpfront -V" prints and both packages must carry.
set -eu
cd "$(dirname "$0")/.."
meson introspect --projectinfo meson.build |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])'
