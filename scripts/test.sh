#!/bin/sh
# SPDX-License-Identifier: MIT
# Build smtpfront and run the whole test suite: the meson suites (unit,
# e2e, abuse, postfix, doc) in a normal build and in an AddressSanitizer +
# UBSan build, the unit tests under valgrind, the fuzzers for a bounded
# time, the packaging tests (tests/pkg: the unit file and its hardening,
# the .deb installed end to end, the .rpm) and bench --quick.
# Installs what it needs first (scripts/deps.sh test: see there what and
# how). The Postfix and package-install tests need root.
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh test
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
passed=0
failed=0
skipped=0
count() {	# count PASSED FAILED SKIPPED
	passed=$((passed + $1))
	failed=$((failed + $2))
	skipped=$((skipped + $3))
}
run_suite() {
	dir=$1
	shift
	[ -d "$dir" ] || meson setup "$dir" "$@" >/dev/null
	ninja -C "$dir"
	meson test -C "$dir" --print-errorlogs --num-processes 2 || :
	# Count from meson's machine-readable log.
	set -- $(python3 -c 'import json,sys
n = {"ok": 0, "failed": 0, "skipped": 0}
for l in open(sys.argv[1]):
    r = json.loads(l)["result"]
    n["ok" if r in ("OK", "EXPECTEDFAIL") else
      "skipped" if r == "SKIP" else "failed"] += 1
print(n["ok"], n["failed"], n["skipped"])' "$dir/meson-logs/testlog.json")
	echo "$dir: $1 passed, $2 failed, $3 skipped"
	count "$@"
}
# One test program that is not a meson test: its exit decides (77: skip).
run_one() {
	name=$1
	log=$2
	shift 2
	rc=0
	"$@" >"$log" 2>&1 || rc=$?
	case $rc in
	0)	echo "$name: passed"
		count 1 0 0 ;;
	77)	echo "$name: skipped: $(sed -n 's/^SKIP: //p' "$log" | head -n 1)"
		count 0 0 1 ;;
	*)	tail -n 60 "$log"
		echo "$name: FAILED (exit $rc, whole log in $log)"
		count 0 1 0 ;;
	esac
}

run_suite build

# The Check suites under memcheck, one process each (CK_FORK=no); the e2e
# suite already ran smtpfront itself under valgrind (test_valgrind.py).
run_one "unit tests under valgrind" build/valgrind-unit.log \
    meson test -C build --setup=valgrind --suite unit --print-errorlogs

# libFuzzer on the PROXY decoder, the config loader and the reply parser,
# FUZZ_TIME seconds each (30 by default): any crash, leak or sanitizer
# report fails.
run_one "fuzz ($(printf %s "${FUZZ_TIME:-30}") s per target)" build/fuzz.log \
    ./scripts/fuzz.sh

# Packaging, once (they build their own packages): about a minute.
for t in test_unit test_deb test_rpm test_nspawn; do
	run_one "tests/pkg/$t" "build/pkg-$t.log" env \
	    SMTPFRONT_BUILD_ROOT="$PWD/build" PYTHONDONTWRITEBYTECODE=1 \
	    timeout 900 python3 "tests/pkg/$t.py"
done

# The benchmark's quick mode: every proxy row once, checking that no
# session or message is lost (numbers are not judged here). It drives
# Postfix's smtp-source, absent where deps.sh left another MTA in place.
if command -v smtp-source >/dev/null 2>&1; then
	run_one "bench --quick" build/bench-quick.log \
	    ./bench/run --quick --build build
else
	echo "bench --quick: skipped: smtp-source (postfix) is not installed"
	count 0 0 1
fi

run_suite build-asan -Db_sanitize=address,undefined -Db_lundef=false \
	-Dbuildtype=debug
echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
