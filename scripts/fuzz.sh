#!/bin/sh
# Fuzz the PROXY decoder, the config loader, the SMTP reply parser and the
# dialog follower with libFuzzer, each for a bounded time, and fail on any
# crash, leak, timeout or sanitizer report.
#
# How it builds: Debian's clang 14 (with libclang-rt-14-dev for libFuzzer)
# in its own meson build dir, FUZZ_DIR (build-fuzz/). meson compiles the
# project's static libraries with -fsanitize=fuzzer-no-link,address,undefined
# (coverage for libFuzzer, no main), then each tests/fuzz_<name>.c is linked
# against them with -fsanitize=fuzzer. The sources come from meson, so a new
# file in smtp/ or config/ needs nothing here. No meson option is involved:
# the normal builds stay gcc-only. tests/meson.build separately runs the same
# harnesses once over their seed corpora with gcc (tests fuzz_*_corpus).
#
# Usage: scripts/fuzz.sh [TARGET...]    TARGET: proxy config reply dialog (default all)
#   FUZZ_TIME=30       seconds per target (-max_total_time)
#   FUZZ_RUNS=N        run N inputs per target instead of for a time
#   FUZZ_DIR=build-fuzz
# Seeds are read from tests/fuzz/<name>/ and never written: new inputs go to
# FUZZ_DIR/corpus/<name>/. A crash is saved as FUZZ_DIR/artifacts/<name>/
# crash-*: once fixed, add it to tests/fuzz/<name>/ and to the unit vectors.
# Output of each run: FUZZ_DIR/<name>.log.
set -eu
cd "$(dirname "$0")/.."
time=${FUZZ_TIME:-30}
runs=${FUZZ_RUNS:-}
dir=${FUZZ_DIR:-build-fuzz}
case $dir in /*) ;; *) dir="./$dir" ;; esac
targets=${*:-proxy config reply dialog}

./scripts/deps.sh build
missing=""
for p in clang libclang-rt-14-dev; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "fuzz: need root to install:$missing" >&2
		exit 1
	fi
	echo "fuzz: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

san="-fsanitize=address,undefined -fno-sanitize-recover=all"
if [ ! -d "$dir" ]; then
	CC=clang meson setup "$dir" -Dtests=disabled -Dbuildtype=debugoptimized \
	    -Db_lundef=false -Dc_args="-fsanitize=fuzzer-no-link $san \
	    -fno-omit-frame-pointer" >/dev/null
fi
ninja -C "$dir" smtp/libsf_smtp.a config/libsf_config.a >/dev/null

for name in $targets; do
	case $name in
	proxy|reply|dialog) libs="$dir/smtp/libsf_smtp.a" ;;
	config)	libs="$dir/config/libsf_config.a $(pkg-config --libs yaml-0.1)" ;;
	*)	echo "fuzz: unknown target $name (proxy, config, reply, dialog)" >&2
		exit 2 ;;
	esac
	# shellcheck disable=SC2086
	clang -g -O1 -std=c11 -D_GNU_SOURCE -I. -Wall -Wextra \
	    -Wno-unused-parameter -fno-omit-frame-pointer \
	    -fsanitize=fuzzer $san "tests/fuzz_$name.c" $libs \
	    -o "$dir/fuzz_$name"
done

# One at a time, nice: the machine is shared.
failed=0
for name in $targets; do
	mkdir -p "$dir/corpus/$name" "$dir/artifacts/$name"
	log="$dir/$name.log"
	if [ -n "$runs" ]; then
		limit="-runs=$runs"
	else
		limit="-max_total_time=$time"
	fi
	dict=""
	[ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
	# A header is at most 536 bytes, a reply line 1000: room for what follows.
	case $name in
	proxy)	max_len=1024 ;;
	reply)	max_len=2048 ;;
	config)	max_len=4096 ;;
	dialog)	max_len=4096 ;;
	esac
	rc=0
	# shellcheck disable=SC2086
	ASAN_OPTIONS="detect_leaks=1" \
	UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
	nice "$dir/fuzz_$name" $limit $dict -max_len=$max_len -timeout=10 \
	    -rss_limit_mb=1024 -detect_leaks=1 -print_final_stats=1 \
	    -artifact_prefix="$dir/artifacts/$name/" \
	    "$dir/corpus/$name" "tests/fuzz/$name" >"$log" 2>&1 || rc=$?
	# Belt and braces: a report that did not stop the run still fails it.
	if grep -Eq 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:|==ERROR: libFuzzer|SUMMARY: ' "$log"; then
		[ "$rc" -eq 0 ] && rc=1
	fi
	done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$done_line" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
	corp=$(echo "$done_line" | sed -n 's/.*corp: \([^ ]*\).*/\1/p')
	if [ "$rc" -eq 0 ]; then
		echo "fuzz $name: ok: ${execs:-?} runs, ${rate:-?} exec/s, cov: ${cov:-?} ft: ${ft:-?} corp: ${corp:-?}"
	else
		echo "fuzz $name: FAILED (exit $rc), see $log"
		grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" | head -n 20
		failed=$((failed + 1))
	fi
done
[ "$failed" -eq 0 ]
