#!/usr/bin/env bash
# fuzz/run.sh -- what `make fuzz` and `make fuzz-regress` run.
#
#   fuzz/run.sh fuzz [target ...]
#       Installs clang and its fuzzer runtime if missing (test/deps.sh: as
#       root, or prints the apt-get line), builds the libFuzzer targets and
#       fuzzes each for FUZZ_SECONDS (default 60), starting from the
#       committed seed corpus (fuzz/corpus/<target>/) and the regression
#       inputs (fuzz/regressions/<target>/).  Any crash, sanitizer report,
#       failed check, timeout or out-of-memory is a failure: its input is
#       copied into fuzz/regressions/<target>/ (fix the bug, give the file a
#       name that says what it is, commit both).
#   fuzz/run.sh regress [target ...]
#       Builds the targets with gcc's AddressSanitizer and
#       UndefinedBehaviorSanitizer and a plain main() (no clang needed) and
#       runs each once on every committed corpus and regression input; then
#       runs the unit tests built the same way (key_cleanup: no keyed
#       OpenSSL context or key bytes survive an ERROR).  This is the
#       `make test` stage "fuzz".
#
# Environment: FUZZ_SECONDS; FUZZ_CORPUS=DIR keeps the corpus the fuzzer
# grows in DIR/<target>/ across runs (default: a temporary directory,
# removed afterwards); FUZZ_JOBS=N fuzzes N targets at once (default 1;
# the machine has 2 cores and others use it).
set -uo pipefail

cd "$(dirname "$0")/.."
PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
ALL_TARGETS="envelope mask_phone mask_cn_id mask_bank_card mask_email mask_name mask_address partial noise pseudonym detect fake"
UNITS="key_cleanup"	# (regress only: tests with a main() of their own)

mode=${1:-}
shift || true
targets=
units=
if [ $# -eq 0 ]; then
	targets=$ALL_TARGETS
	[ "$mode" != regress ] || units=$UNITS
fi
for t in "$@"; do
	if [[ " $ALL_TARGETS " == *" $t "* ]]; then
		targets="$targets $t"
	elif [ "$mode" = regress ] && [[ " $UNITS " == *" $t "* ]]; then
		units="$units $t"
	else
		echo "fuzz: unknown target $t (targets: $ALL_TARGETS; for regress also: $UNITS)" >&2
		exit 2
	fi
done

# A sanitizer report must end the process with a failure, never scroll by.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

build() {	# build ENGINE
	make -s -C fuzz PG_CONFIG="$PG_CONFIG" ENGINE="$1" -j2 >"$work/build-$1.log" 2>&1 ||
		{ cat "$work/build-$1.log" >&2; echo "fuzz: build failed" >&2; exit 1; }
}

work=$(mktemp -d "${TMPDIR:-/tmp}/pii_guard_fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

case "$mode" in
regress)
	build standalone
	failed=0
	for t in $targets; do
		inputs=(fuzz/corpus/"$t")
		[ -d fuzz/regressions/"$t" ] && inputs+=(fuzz/regressions/"$t")
		if fuzz/build/standalone/"$t" "${inputs[@]}" >"$work/$t.log" 2>&1; then
			echo "ok - fuzz $t: $(tail -1 "$work/$t.log" | sed 's/.*: //')"
		else
			echo "not ok - fuzz $t"
			# the input is named just before the report
			grep '^input ' "$work/$t.log" | tail -1
			grep -v '^input ' "$work/$t.log" | head -40
			failed=$((failed + 1))
		fi
	done
	for u in $units; do
		if fuzz/build/standalone/"$u" >"$work/$u.log" 2>&1; then
			echo "ok - fuzz $u: $(tail -1 "$work/$u.log" | sed 's/^[^:]*: //')"
		else
			echo "not ok - fuzz $u"
			grep -v '^ok: ' "$work/$u.log" | head -60
			failed=$((failed + 1))
		fi
	done
	[ "$failed" -eq 0 ]
	;;
fuzz)
	PG_MAJOR=$PG_MAJOR ./test/deps.sh clang libclang-rt-14-dev || exit 1
	build libfuzzer
	seconds=${FUZZ_SECONDS:-60}
	corpus=${FUZZ_CORPUS:-$work/corpus}
	jobs=${FUZZ_JOBS:-1}

	fuzz_one() {	# fuzz_one TARGET: exit status 0 when nothing was found
		local t=$1 dict=() extra=()
		mkdir -p "$corpus/$t" "$work/artifacts/$t"
		[ -f fuzz/dict/"$t".dict ] && dict=(-dict=fuzz/dict/"$t".dict)
		[ -d fuzz/regressions/"$t" ] && extra=(fuzz/regressions/"$t")
		fuzz/build/libfuzzer/"$t" -max_total_time="$seconds" -timeout=10 \
			-rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
			-artifact_prefix="$work/artifacts/$t/" "${dict[@]}" \
			"$corpus/$t" fuzz/corpus/"$t" "${extra[@]}" >"$work/$t.log" 2>&1
	}

	failed=0
	running=0
	for t in $targets; do
		echo "== fuzz $t (${seconds}s)"
		fuzz_one "$t" &
		running=$((running + 1))
		if [ "$running" -ge "$jobs" ]; then
			wait -n || true
			running=$((running - 1))
		fi
	done
	wait
	for t in $targets; do
		found=$(find "$work/artifacts/$t" -type f 2>/dev/null)
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
		if [ -z "$found" ] && grep -q '^stat::number_of_executed_units' "$work/$t.log"; then
			echo "ok - fuzz $t: $runs runs, $(grep -c . <(ls "$corpus/$t")) inputs in the corpus"
			continue
		fi
		echo "not ok - fuzz $t"
		grep -E 'ERROR|SUMMARY|check failed|runtime error|#[0-9]+ ' "$work/$t.log" | head -30
		mkdir -p fuzz/regressions/"$t"
		for f in $found; do
			cp "$f" fuzz/regressions/"$t"/
			echo "   input kept as fuzz/regressions/$t/$(basename "$f")"
		done
		[ -n "$found" ] || tail -20 "$work/$t.log"
		failed=$((failed + 1))
	done
	[ "$failed" -eq 0 ]
	;;
*)
	echo "usage: fuzz/run.sh fuzz|regress [target ...]" >&2
	exit 2
	;;
esac
