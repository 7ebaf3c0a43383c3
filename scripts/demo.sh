#!/bin/sh
# Build smtpfront and run it in the foreground on a working demo:
# 127.0.0.1:2525 -> PROXY v2 -> the test backend on 127.0.0.1:10025.
# Try it from another terminal:  printf 'EHLO me\r\nQUIT\r\n' | nc 127.0.0.1 2525
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
./build/tests/smtpfront-test-backend --listen 127.0.0.1:10025 --proxy v2 \
	--name backend1 >/dev/null &
backend=$!
trap 'kill $backend 2>/dev/null' EXIT INT TERM
echo "smtpfront demo: connect to 127.0.0.1:2525 (Ctrl-C stops)"
echo "  e.g.  printf 'EHLO me\\r\\nQUIT\\r\\n' | nc 127.0.0.1 2525"
./build/cmd/smtpfront -c examples/demo.yaml
