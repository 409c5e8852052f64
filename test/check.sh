#!/usr/bin/env bash
# test/check.sh -- `make check`: the pg_regress suites on a temporary
# instance, as PostgreSQL's own modules run theirs (pg_regress
# --temp-instance with a --temp-config), for a developer who has the
# PostgreSQL server development files and OpenSSL's, and no root.
#
# pii_guard is built and installed into a private copy of the installation
# (test/lib.sh: the server binaries copied, the rest symlinked, pii_guard by
# DESTDIR), and pg_regress starts its instance from there with pii_guard
# preloaded and a test master key (test/keys/, public: never a real key).
# Results are in the checkout (results/, regression.diffs), as with
# `make installcheck`.  As root (CI), the instance runs as the postgres
# user, which writes the results into the work directory; they are copied
# back.
#
# Environment: REGRESS (the suites, from the Makefile), PG_MAJOR, KEEP=1.
set -uo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

command -v "$PG_CONFIG" >/dev/null ||
	pgg_die "pg_config not found ($PG_CONFIG): install postgresql-server-dev-$PG_MAJOR"
pgg_init
pgg_install
# The suites' expected output names the superuser postgres (as on a packaged
# server); pg_regress's instance would name it after whoever runs it, and
# its psql would connect as that user.  So, in this private installation
# only, its initdb is initdb -U postgres and its psql connects as postgres.
mv "$PGG_SERVER_BIN/initdb" "$PGG_SERVER_BIN/initdb.real"
printf '#!/bin/sh\nexec "%s/initdb.real" -U postgres "$@"\n' "$PGG_SERVER_BIN" >"$PGG_SERVER_BIN/initdb"
printf '#!/bin/sh\nexec "%s/psql" -U postgres "$@"\n' "$PGG_CLIENT_BIN" >"$PGG_SERVER_BIN/psql"
chmod 755 "$PGG_SERVER_BIN/initdb" "$PGG_SERVER_BIN/psql"

conf=$PGG_WORK/check.conf
cat >"$conf" <<EOF
shared_preload_libraries = 'pii_guard'
pii_guard.master_key_command = 'cat $PGG_WORK/keys/test-master-1.hex'
fsync = off
max_connections = 40
EOF

out=$PWD
instance=$PGG_WORK/tmp_check
if [ "$(id -u)" -eq 0 ]; then
	out=$PGG_WORK/check
	instance=$out/tmp_check
	mkdir -p "$out"
	chown -R postgres "$out"
	chmod 644 "$conf"
fi
pgxs_dir=$(dirname "$("$PG_CONFIG" --pgxs)")/..
rm -rf results regression.diffs regression.out
repo=$PWD
# (from the output directory: suites \copy to and from results/)
cd "$out" && pgg_as_server "$pgxs_dir/test/regress/pg_regress" \
	--temp-instance="$instance" --temp-config="$conf" \
	--bindir="$PGG_SERVER_BIN" --inputdir="$repo" --outputdir="$out" \
	--user=postgres --dbname=pii_guard_regress --load-extension=pii_guard \
	${REGRESS:-}
rc=$?
cd "$repo" || exit 1
if [ "$out" != "$repo" ]; then
	cp -r "$out"/results "$out"/regression.* . 2>/dev/null
fi
exit $rc
