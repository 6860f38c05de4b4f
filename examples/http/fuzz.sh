#!/bin/sh
# Build a libFuzzer target with clang and run it briefly:
#   fuzz.sh OUTDIR NAME SECONDS SEEDDIR SOURCE...
# The target is built as OUTDIR/NAME with -fsanitize=fuzzer,address,undefined
# and run for SECONDS on a working corpus (OUTDIR/NAME-corpus, started from
# SEEDDIR). Exit 77 (skipped, with the reason) when clang or its libFuzzer
# runtime (Debian libclang-rt-<version>-dev) is missing; a crash or a broken
# contract (the target traps) fails with the reproducer's path in the log.
set -eu
out=$1 name=$2 secs=$3 seeds=$4
shift 4
cc=${FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
	echo "SKIP: $cc not installed (Debian clang): no fuzzing of $name"
	exit 77
fi
incs=""
for src in "$@"; do
	incs="$incs -I$(dirname "$src")"
done
mkdir -p "$out"
bin=$out/$name
# shellcheck disable=SC2086
if ! "$cc" -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined $incs -o "$bin" "$@" >"$bin.build.log" 2>&1; then
	if grep -q -e "libclang_rt.fuzzer" -e "fsanitize=fuzzer" "$bin.build.log"; then
		echo "SKIP: $cc has no libFuzzer runtime (Debian libclang-rt-*-dev):"
		cat "$bin.build.log"
		exit 77
	fi
	cat "$bin.build.log"
	exit 1
fi
corpus=$out/$name-corpus
mkdir -p "$corpus"
cd "$out"
# -timeout: one input taking over 5 s is a hang; the whole run is bounded
# by -max_total_time (and meson's test timeout). -error_exitcode and
# -timeout_exitcode: libFuzzer's default for a crash is 77, which meson
# reads as "skipped": a broken contract was reported as a skip (fuzz-http
# kept eleven crash inputs that way), so every finding exits 1.
exec "$bin" -max_total_time="$secs" -timeout=5 -rss_limit_mb=1024 -print_final_stats=1 \
	-error_exitcode=1 -timeout_exitcode=1 "$corpus" "$seeds"
