#!/bin/sh
# Build smtpfront and run the whole test suite twice: a normal build and an
# AddressSanitizer + UBSan build. Unit tests (Check), end-to-end tests with
# the test backend, and end-to-end tests with real Postfix (needs root).
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
passed=0
failed=0
run_suite() {
	dir=$1
	shift
	[ -d "$dir" ] || meson setup "$dir" "$@" >/dev/null
	ninja -C "$dir"
	if meson test -C "$dir" --print-errorlogs --num-processes 2; then
		:
	fi
	# Count from meson's machine-readable log.
	p=$(python3 -c 'import json,sys
n=0
for l in open(sys.argv[1]):
    n += json.loads(l)["result"] in ("OK","EXPECTEDFAIL")
print(n)' "$dir/meson-logs/testlog.json")
	f=$(python3 -c 'import json,sys
n=0
for l in open(sys.argv[1]):
    n += json.loads(l)["result"] not in ("OK","EXPECTEDFAIL","SKIP")
print(n)' "$dir/meson-logs/testlog.json")
	echo "$dir: $p passed, $f failed"
	passed=$((passed + p))
	failed=$((failed + f))
}
run_suite build
# The benchmark's quick mode: every proxy row once, checking that no
# session or message is lost (numbers are not judged here).
if ./bench/run --quick --build build >build/bench-quick.log 2>&1; then
	echo "bench --quick: 1 passed, 0 failed"
	passed=$((passed + 1))
else
	tail -n 30 build/bench-quick.log
	echo "bench --quick: 0 passed, 1 failed"
	failed=$((failed + 1))
fi
run_suite build-asan -Db_sanitize=address,undefined -Db_lundef=false \
	-Dbuildtype=debug
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
