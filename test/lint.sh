#!/usr/bin/env bash
# test/lint.sh -- what `make lint` runs (and `make test`, as its stage
# "lint"): static analysis of src/, every check required to be clean.
#
#   cppcheck    warning, style, performance and portability checks, with
#               PostgreSQL's headers, one preprocessor configuration (the
#               build's), test/lint/postgresql.cfg (what cppcheck must know
#               about PG_TRY) and test/lint/cppcheck.supp (noise for any
#               PostgreSQL module).  False positives in our code are
#               suppressed where they occur, with the reason.
#   clang-tidy  the checks in .clang-tidy (bugprone-*, clang-analyzer-*,
#               cert-*), every finding an error.
#   clang       the build's -Wall -Wextra warnings under clang too (the
#               build itself uses gcc), as errors.
#
# test/lint/exceptions turns single checks off for single files, each with
# the reason.  Installs cppcheck, clang-tidy and clang if missing
# (test/deps.sh).  Prints "ok - CHECK" or "not ok - CHECK" for each; exit
# status 0 when all are clean.
#
# A full run takes about a minute on two cores, nearly all of it analysis
# that gives the same result for the same input, so results are kept in
# LINT_CACHE (default ~/.cache/pii_guard/lint; LINT_CACHE=none: no cache):
# cppcheck's own build directory, and for clang-tidy a marker per file that
# was clean, named by a hash of everything the result depends on (the file,
# our headers, the configuration, the tool and PostgreSQL versions).
set -uo pipefail

cd "$(dirname "$0")/.."
PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}

PG_MAJOR=$PG_MAJOR ./test/deps.sh cppcheck clang-tidy clang || exit 1
includedir=$("$PG_CONFIG" --includedir-server)
failed=0

cache=${LINT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pii_guard/lint}
if [ "$cache" = none ]; then
	cache=$(mktemp -d)
	trap 'rm -rf "$cache"' EXIT
fi
# (cppcheck's directory names files by path: one per checkout)
cppcheck_dir=$cache/cppcheck-$(pwd | sha256sum | cut -c1-16)
mkdir -p "$cppcheck_dir" "$cache/clang-tidy"

# The arguments test/lint/exceptions gives TOOL for FILE.
exceptions() {	# exceptions TOOL FILE
	local tool file args
	while read -r tool file args; do
		[ "$tool" = "$1" ] && [ "$file" = "$2" ] && printf '%s ' "$args"
	done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' test/lint/exceptions)
}

result() {	# result NAME EXIT_STATUS
	if [ "$2" -eq 0 ]; then
		echo "ok - $1"
	else
		echo "not ok - $1"
		failed=$((failed + 1))
	fi
}

echo "== cppcheck"
# -D: check the configuration the build uses (GCC on x86-64), not every
# combination of #ifdefs in PostgreSQL's headers (minutes, and noise).
cppcheck --quiet -j2 --cppcheck-build-dir="$cppcheck_dir" --max-configs=1 --std=c99 \
	--enable=warning,style,performance,portability \
	--inline-suppr --suppressions-list=test/lint/cppcheck.supp \
	--library=test/lint/postgresql.cfg \
	-D__GNUC__=12 -D__x86_64__ -I src -I "$includedir" \
	--error-exitcode=1 src/*.c
result cppcheck $?

echo "== clang"
rc=0
for f in src/*.c; do
	# shellcheck disable=SC2046
	clang -fsyntax-only -std=gnu99 -Wall -Wextra -Werror -I src -isystem "$includedir" \
		$(exceptions clang "$f") "$f" || rc=1
done
result clang-warnings "$rc"

echo "== clang-tidy"
tidy_one() {	# tidy_one FILE: clang-tidy's findings for FILE, quietly
	local extra key
	extra=$(exceptions clang-tidy "$1")
	extra=${extra% }
	key=$({ cat "$1" src/*.h .clang-tidy; echo "$extra"; clang-tidy --version
		"$PG_CONFIG" --version; } | sha256sum | cut -c1-32)
	[ -e "$cache/clang-tidy/$key" ] && return 0
	clang-tidy --quiet ${extra:+--checks="$extra"} "$1" -- \
		-std=gnu99 -I src -isystem "$includedir" 2>/dev/null &&
		touch "$cache/clang-tidy/$key"
}
export -f tidy_one exceptions
export includedir cache PG_CONFIG
printf '%s\n' src/*.c | xargs -P 2 -I{} bash -c 'tidy_one {}'
result clang-tidy $?

[ "$failed" -eq 0 ]
