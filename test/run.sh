#!/usr/bin/env bash
# test/run.sh -- what `make test` runs.
#
#  1. installs missing Debian packages (as root; otherwise prints the line);
#  2. builds pii_guard with warnings as errors and installs it into a private
#     copy of the PostgreSQL installation (test/lib.sh);
#  3. starts a throwaway cluster (unix socket only, pii_guard preloaded, a
#     test master key) and runs the pg_regress suites and the pgTAP suites
#     (stage_regress, stage_tap);
#  4. runs the scenario scripts (test/scenario/*.sh), which start their own
#     clusters for restarts, dumps and crashes (stage_scenarios);
#  5. runs the static analysis (test/lint.sh: cppcheck, clang-tidy, clang) and
#     replays the fuzz corpus and regression inputs under ASan and UBSan
#     (fuzz/run.sh regress) (stage_lint, stage_fuzz);
#  6. stops and removes every cluster, also on failure or Ctrl-C, and ends
#     with a pass/fail summary and a non-zero exit on any failure (summary).
#
# Each stage is a function; run_stages, at the end, calls them in order.
#
# Environment: REGRESS (suite names, from the Makefile), ONLY=regress|tap|
# scenario|lint|fuzz (one stage), SCENARIOS="name ..." (a subset), KEEP=1
# (keep the work directory for inspection), SANITIZE=1 (make test-memcheck:
# stages 3 and 4 with pii_guard built with AddressSanitizer and
# UndefinedBehaviorSanitizer -- see test/lib.sh -- then the sorted sanitizer
# reports as one more result; stage 5 is skipped).
set -uo pipefail

cd "$(dirname "$0")/.."
. test/lib.sh
run_t0=$SECONDS

# An estimate first: this checkout's last full run, or what README says.
if [ -z "${ONLY:-}${SCENARIOS:-}" ]; then
	if [ -s .test-time ]; then
		echo "pii_guard: make test took $(( $(cat .test-time) / 60 )) min $(( $(cat .test-time) % 60 )) s here last time"
	else
		echo "pii_guard: make test takes about 5 minutes on a 2-core machine, plus any packages to install"
	fi
fi

# (the scenario stage also drives real clients: test/scenario/clients.sh)
case "${ONLY:-}" in
	"" | scenario) ./test/deps.sh clients || exit 1 ;;
	*) ./test/deps.sh || exit 1 ;;
esac

pgg_init
# (lint and the fuzz replays build what they need themselves)
case "${ONLY:-}" in
	lint | fuzz) ;;
	*) pgg_install ;;
esac

# --- bookkeeping ------------------------------------------------------------
passed=0
failed=0
failures=()
stage_times=()

stage_start() { stage_t0=$SECONDS; }
stage_end() {	# stage_end NAME: print and keep its elapsed time
	local t=$((SECONDS - stage_t0))
	echo "# stage $1: $t s"
	stage_times+=("$1 $t")
}

record() {	# record NAME ok|fail
	if [ "$2" = ok ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failures+=("$1")
	fi
}

want() {	# want STAGE: ONLY names it, or nothing (no lint or fuzz under SANITIZE)
	if [ -n "${SANITIZE:-}" ] && { [ "$1" = lint ] || [ "$1" = fuzz ]; }; then
		return 1
	fi
	[ -z "${ONLY:-}" ] || [ "$ONLY" = "$1" ]
}

# run_stage STAGE NAME: stage_NAME, timed as NAME, if STAGE (as ONLY says
# it) is wanted.
run_stage() {
	want "$1" || return 0
	stage_start
	"stage_$2"
	stage_end "$2"
}

# --- pg_regress -------------------------------------------------------------
stage_regress() {
	local regress_rc regress_results=0 regress_wanted name result
	echo "== pg_regress"
	rm -rf results regression.diffs regression.out
	# (make installcheck, against the cluster main: what a developer runs
	# against a server of their own)
	PGHOST=$(pgg_sock main) PGPORT=5432 PGUSER=postgres \
		make -s --no-print-directory installcheck PG_CONFIG="$PG_CONFIG" REGRESS="${REGRESS:-}" \
		>"$PGG_WORK/pg_regress.log" 2>&1
	regress_rc=$?
	cat "$PGG_WORK/pg_regress.log"
	while read -r name result; do
		record "regress/$name" "$result"
		regress_results=$((regress_results + 1))
	done < <(sed -nE \
		-e 's/^(test |     )?([a-z0-9_]+) +\.\.\. ok.*/\2 ok/p' \
		-e 's/^(test |     )?([a-z0-9_]+) +\.\.\. FAILED.*/\2 fail/p' \
		-e 's/^ok [0-9]+ +[-+] ([a-z0-9_]+) .*/\1 ok/p' \
		-e 's/^not ok [0-9]+ +[-+] ([a-z0-9_]+) .*/\1 fail/p' "$PGG_WORK/pg_regress.log")
	# pg_regress failing before or around the suites (no server, a crash)
	# must not pass for "no failures".
	regress_wanted=$(wc -w <<<"${REGRESS:-}")
	if [ "$regress_results" -ne "$regress_wanted" ]; then
		echo "pg_regress reported $regress_results of $regress_wanted suites (exit status $regress_rc)"
		record regress/pg_regress fail
	elif [ "$regress_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
		echo "pg_regress failed (exit status $regress_rc)"
		record regress/pg_regress fail
	fi
	if [ -s regression.diffs ]; then
		echo "-- first lines of regression.diffs:"
		head -80 regression.diffs
	fi
}

# --- pgTAP ------------------------------------------------------------------
stage_tap() {
	local suite
	compgen -G "test/*.sql" >/dev/null || return 0
	echo "== pgTAP"
	pgg_psql main -d postgres -c "CREATE DATABASE pii_guard_tap"
	pgg_psql main -d pii_guard_tap -c "CREATE EXTENSION pgtap; CREATE EXTENSION pii_guard;"
	# The seed scenario the role suites assert against; if it does not load,
	# the suites are skipped (they would all fail for that one reason).
	if ! pgg_psql main -d pii_guard_tap -f test/fixtures/crm.sql >"$PGG_WORK/fixtures.log" 2>&1; then
		cat "$PGG_WORK/fixtures.log"
		record tap/fixtures fail
		return
	fi
	for suite in test/*.sql; do
		if pg_prove --host "$(pgg_sock main)" --port 5432 --username postgres \
			--dbname pii_guard_tap "$suite"; then
			record "tap/$(basename "$suite" .sql)" ok
		else
			record "tap/$(basename "$suite" .sql)" fail
		fi
	done
}

# --- scenarios --------------------------------------------------------------
# TEST_JOBS (default 2) at a time: each scenario's clusters live under a
# directory of its own ($PGG_WORK/scenarios/NAME, test/lib.sh) and have
# names no other scenario uses, and only its own are stopped when it ends;
# its output is printed, whole, once it has ended.  A scenario that times
# what the machine does (its header says "Runs alone.") runs by itself,
# after the others.  The longest start first.
stage_scenarios() {
	local scen_jobs=${TEST_JOBS:-2} scen_logs=$PGG_WORK/scenario-logs name script
	local -A scen_of=()		# (pid -> name, of those running; scen_start, scen_finish)
	local scen_queue=() scen_pick=() scen_alone=()
	mkdir -p "$scen_logs" "$PGG_WORK/scenarios"
	chmod 755 "$PGG_WORK/scenarios"
	# (the longest first, as measured on the 2-core machine: 56 s to 15 s;
	# the rest take 3 to 14 s)
	for name in upgrade cache_churn demo master_key_failures restore_policy dump_owner \
		export_limits audit_worker_cost clients dump_restore; do
		[ -f "test/scenario/$name.sh" ] && scen_queue+=("test/scenario/$name.sh")
	done
	for script in test/scenario/*.sh; do
		[[ " ${scen_queue[*]} " == *" $script "* ]] || scen_queue+=("$script")
	done
	for script in "${scen_queue[@]}"; do
		name=$(basename "$script" .sh)
		if [ -n "${SCENARIOS:-}" ] && [[ " $SCENARIOS " != *" $name "* ]]; then
			continue
		fi
		if grep -q '^# Runs alone\.' "$script"; then scen_alone+=("$script"); else scen_pick+=("$script"); fi
	done
	for script in "${scen_pick[@]}"; do
		while [ "${#scen_of[@]}" -ge "$scen_jobs" ]; do scen_finish; done
		scen_start "$script"
	done
	while [ "${#scen_of[@]}" -gt 0 ]; do scen_finish; done
	for script in "${scen_alone[@]}"; do
		scen_start "$script"
		scen_finish
	done
	pgg_stop_all
}
scen_start() {	# scen_start SCRIPT: run it in the background
	local name
	name=$(basename "$1" .sh)
	(
		export PGG_CLUSTER_ROOT=$PGG_WORK/scenarios/$name
		t0=$SECONDS
		# shellcheck disable=SC1090
		(PGG_CLUSTERS=() && . "$1" && pgg_done)
		rc=$?
		pgg_stop_under "$PGG_CLUSTER_ROOT" "$PGG_CLUSTER_ROOT"/pii_guard.*
		echo "  # $name took $((SECONDS - t0)) s"
		exit $rc
	) >"$scen_logs/$name.log" 2>&1 &
	scen_of[$!]=$name
}
scen_finish() {	# scen_finish: wait for one to end, print and record it
	local pid rc name
	wait -n -p pid
	rc=$?
	name=${scen_of[$pid]}
	unset "scen_of[$pid]"
	echo "== scenario $name"
	cat "$scen_logs/$name.log"
	if [ "$rc" -eq 0 ]; then
		echo "ok - scenario $name"
		record "scenario/$name" ok
	else
		echo "not ok - scenario $name"
		record "scenario/$name" fail
	fi
}

# --- static analysis and fuzz regressions ---------------------------------
# Both print "ok - NAME" / "not ok - NAME" per check; a run that fails
# before any (missing tools, a build error) must not pass for "no failures".
record_lines() {	# record_lines PREFIX LOG EXIT_STATUS
	local status name n=0
	while read -r status name; do
		record "$1/$name" "$status"
		n=$((n + 1))
	done < <(sed -nE -e 's/^ok - (fuzz )?([a-z_-]+).*/ok \2/p' \
		-e 's/^not ok - (fuzz )?([a-z_-]+).*/fail \2/p' "$2")
	if [ "$3" -ne 0 ] && [ "$n" -eq 0 ]; then
		record "$1/setup" fail
	fi
}
stage_lint() {
	local lint_rc
	./test/lint.sh >"$PGG_WORK/lint.log" 2>&1
	lint_rc=$?
	cat "$PGG_WORK/lint.log"
	record_lines lint "$PGG_WORK/lint.log" "$lint_rc"
}
stage_fuzz() {
	local fuzz_rc
	echo "== fuzz regressions"
	./fuzz/run.sh regress >"$PGG_WORK/fuzz.log" 2>&1
	fuzz_rc=$?
	cat "$PGG_WORK/fuzz.log"
	record_lines fuzz "$PGG_WORK/fuzz.log" "$fuzz_rc"
}

# --- sanitizer reports (make test-memcheck) ---------------------------------
stage_sanitizer() {
	echo "== sanitizer reports"
	pgg_stop_all
	if pgg_sanitizer_report; then
		record memcheck/sanitizer ok
	else
		record memcheck/sanitizer fail
	fi
}

# --- the summary; its status is the run's -----------------------------------
summary() {
	local t f
	echo
	echo "== summary"
	for t in "${stage_times[@]}"; do echo "# stage ${t% *}: ${t##* } s"; done
	echo "# all stages: $((SECONDS - run_t0)) s (from the start, builds and installs included)"
	# (the next run's estimate: this checkout's last full run)
	if [ -z "${ONLY:-}${SCENARIOS:-}${SANITIZE:-}" ] && [ "$failed" -eq 0 ]; then
		echo "$((SECONDS - run_t0))" >.test-time 2>/dev/null || true
	fi
	# (A CI log is often read from its end: a failed regression suite's
	# differences are repeated here, shortly.)
	if [ "$failed" -ne 0 ] && [ -s regression.diffs ]; then
		echo "-- regression.diffs (first lines; the whole file is in the checkout):"
		head -40 regression.diffs
	fi
	for f in "${failures[@]}"; do echo "FAILED: $f"; done
	if [ $((passed + failed)) -eq 0 ]; then
		echo "no tests ran"
		return 1
	fi
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

# --- the run ----------------------------------------------------------------
# The stages run as a background job in a process group of their own, so
# that an interrupt reaches this shell even while a psql or pg_regress in
# the foreground would swallow it: the trap below then ends the whole job
# and the EXIT trap (test/lib.sh) stops and removes every cluster.
run_stages() {
	set +m		# (the stages' own jobs stay in this job's process group)
	# (pg_regress and pgTAP share one cluster)
	if want regress || want tap; then
		pgg_new_cluster main
		pgg_start main
	fi
	run_stage regress regress
	run_stage tap tap
	pgg_stop main
	run_stage scenario scenarios
	run_stage lint lint
	run_stage fuzz fuzz
	[ -z "${SANITIZE:-}" ] || stage_sanitizer
	summary
}

set -m
run_stages &
stages=$!
trap 'echo "pii_guard: interrupted" >&2; kill -TERM -- -$stages 2>/dev/null; wait $stages 2>/dev/null; exit 130' INT TERM HUP
wait $stages
