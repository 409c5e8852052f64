# test/scenario/clients.sh -- real client libraries talking to the masking views, as the
# seed roles of examples/ go about their day on the examples' database
# (examples/roles.sql, schema.sql, 5,000 customers of data.sql, policy.sql):
#
#   node-postgres (pg), pg-cursor, pg-copy-streams  test/clients/node_checks.js
#   Sequelize (with pg)                             test/clients/sequelize_checks.js
#   psycopg2                                        test/clients/psycopg2_checks.py
#   Django (an unmanaged model, djcrm/)             test/clients/django_checks.py
#   psql, pgbench, pg_dump                          here
#
#  1. support_dan looks customers up by phone, with parameters (text,
#     varchar, = ANY($1), IN): the right customer, never refused;
#  2. sales_bob updates a column of all his ~2,500 customers in one
#     statement (his limit is 100 rows a statement): a write without
#     RETURNING counts nothing; INSERT ... RETURNING id is no export;
#  3. bulk imports through the view (COPY FROM STDIN, multi-row INSERT,
#     bulk_create): only the given columns written, the rest defaults;
#  4. upserts (INSERT ... ON CONFLICT (id) DO NOTHING / DO UPDATE);
#  5. ORM saves write no mask back: a value equal to what the role was
#     shown for the row leaves the stored value as it is, a different one
#     is written (Django save(), Sequelize save()/update(), raw SQL);
#  6. exports within and beyond the limits (COPY TO, a cursor), the
#     connection usable after a refusal, an approval; COPY customers TO;
#  7. what ORMs' introspection sees (information_schema, Django, Sequelize);
#  8. pg_dump as crm_dba, the tables' owner.
#
# Each group of checks runs on its own copy of the examples' database
# (CREATE DATABASE ... TEMPLATE): the day's export counters are per
# database and login role, so one group's refusals cannot use up
# another's budget.  The npm packages (test/clients/package-lock.json) are
# installed with `npm ci` into the work directory (from the registry, or
# the npm cache when it has them), then kept in ~/.cache/pii_guard/clients
# under the lock file's checksum for the next run (CLIENTS_CACHE=DIR for
# another place, CLIENTS_CACHE=none for no cache at all).  Debian's
# python3-psycopg2 and python3-django come from test/deps.sh; they are for
# Debian's python3, /usr/bin/python3, whatever python3 comes first on PATH.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

name=clients
cl_dir=$PGG_REPO/test/clients
cl_python=/usr/bin/python3
# (a worker per database that uses pii_guard: one per copy)
pgg_new_cluster $name "max_worker_processes = 32"
pgg_start $name
pgg_env $name

cl_psql() { psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock $name)" -p 5432 "$@"; }

# The examples' database, as examples/demo.sh loads it (5,000 customers).
cl_setup() {
	pgg_new_db $name crm &&
	pgg_psql $name -d crm -f "$PGG_REPO/examples/roles.sql" &&
	cl_psql -U crm_dba -d crm -f "$PGG_REPO/examples/schema.sql" &&
	cl_psql -U crm_dba -d crm -v customers=5000 -f "$PGG_REPO/examples/data.sql" &&
	cl_psql -U crm_dba -d crm -f "$PGG_REPO/examples/policy.sql"
}
if ! cl_setup >"$PGG_WORK/clients_setup.log" 2>&1; then
	grep -m5 -E 'ERROR|FATAL|error' "$PGG_WORK/clients_setup.log" | sed 's/^/  # /'
	pgg_ok "the examples load" false
	return 1
fi
echo "  ok - the examples load (5,000 customers)"

# A fresh copy of the examples' database: cl_db NAME
cl_db() {
	pgg_psql $name -d postgres -c "CREATE DATABASE $1 TEMPLATE crm" >/dev/null || return 1
	echo "$1"
}

# Run a client program; its "  ok"/"  not ok" lines are shown and its
# failures counted.  A program exits 0 when its checks ran; one that
# crashed, hung or could not start is a failure of its own.
cl_run() {	# cl_run LABEL COMMAND...
	local label=$1 out rc n
	shift
	out=$(timeout -k 5 150 "$@" 2>&1)
	rc=$?
	[ -n "$out" ] && printf '%s\n' "$out"
	n=$(grep -c '^ *not ok - ' <<<"$out")
	PGG_FAILS=$((PGG_FAILS + n))
	if [ "$rc" -ne 0 ] && ! grep -qE '^ *not ok - .*(the program failed|timed out)' <<<"$out"; then
		echo "  not ok - $label: exited with status $rc$([ "$rc" -eq 124 ] && echo ' (timed out)')"
		PGG_FAILS=$((PGG_FAILS + 1))
	fi
}
# pgg_ok, showing DETAIL's first lines when the check fails.
cl_ok() {	# cl_ok DESCRIPTION DETAIL COMMAND...
	local desc=$1 detail=$2
	shift 2
	if "$@"; then
		echo "  ok - $desc"
	else
		echo "  not ok - $desc"
		head -3 <<<"$detail" | cut -c1-400 | sed 's/^/    # /'
		PGG_FAILS=$((PGG_FAILS + 1))
	fi
}
cl_py() { cl_run "$1" env PYTHONDONTWRITEBYTECODE=1 "$cl_python" "$cl_dir/$1" "${@:2}"; }

#---------------------------------------------------------------------------
# The npm packages: npm ci into the work directory, kept (by the lock
# file's checksum) in the cache for the next run.
#---------------------------------------------------------------------------
cl_cache=${CLIENTS_CACHE:-${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/pii_guard/clients}
[ "$cl_cache" = none ] && cl_cache=$PGG_WORK/clients-cache
cl_lock=$(sha256sum "$cl_dir/package-lock.json" | cut -c1-16)
cl_modules=$cl_cache/node-$cl_lock/node_modules
cl_npm() {
	local dir=$PGG_WORK/clients-node
	command -v node >/dev/null && command -v npm >/dev/null ||
		{ echo "npm error node or npm not found (test/deps.sh clients installs Debian's)"; return 1; }
	mkdir -p "$dir" "$cl_cache/npm" &&
	cp "$cl_dir/package.json" "$cl_dir/package-lock.json" "$dir/" &&
	# (without a network npm gives up within a minute or two, timeout(1)
	# or not; --prefer-offline: what the npm cache has, it does not ask for)
	(cd "$dir" && timeout -k 10 300 npm ci --no-audit --no-fund --loglevel=error \
		--prefer-offline --fetch-retries=1 --fetch-timeout=30000 --cache "$cl_cache/npm") || return 1
	# Into the cache whole, or not at all.
	rm -rf "$cl_cache/node-$cl_lock.$$" &&
	cp -a "$dir" "$cl_cache/node-$cl_lock.$$" &&
	{ mv -T "$cl_cache/node-$cl_lock.$$" "$cl_cache/node-$cl_lock" 2>/dev/null ||
		rm -rf "$cl_cache/node-$cl_lock.$$"; }
}
t0=$(date +%s)
if [ -d "$cl_modules" ]; then
	echo "  ok - the npm packages of test/clients/package-lock.json, as installed by an earlier run ($cl_cache)"
	cl_have_node=1
elif cl_npm >"$PGG_WORK/clients_npm.log" 2>&1 && [ -d "$cl_modules" ]; then
	echo "  ok - npm ci: pg, pg-cursor, pg-copy-streams, sequelize ($(($(date +%s) - t0)) s)"
	cl_have_node=1
else
	# (the error's code and message, not npm's advice about proxies)
	{ grep -m4 -E '^npm (error|ERR!) (code|errno|network|request|node)' "$PGG_WORK/clients_npm.log" ||
		tail -3 "$PGG_WORK/clients_npm.log"; } | cut -c1-200 | sed 's/^/  # /'
	echo "  not ok - npm ci of test/clients/package-lock.json failed after $(($(date +%s) - t0)) s" \
		"(it needs the npm registry, or the packages in the npm cache $cl_cache/npm)"
	PGG_FAILS=$((PGG_FAILS + 1))
	cl_have_node=
fi
cl_js() {
	if [ -z "$cl_have_node" ]; then
		echo "  not ok - $1 $2: skipped, the npm packages are not installed"
		PGG_FAILS=$((PGG_FAILS + 1))
		return
	fi
	cl_run "$1 $2" env NODE_PATH="$cl_modules" node "$cl_dir/$1" "${@:2}"
}

#---------------------------------------------------------------------------
# 1. support_dan looks customers up by phone number.
#---------------------------------------------------------------------------
echo "  # 1. support_dan looks customers up by phone number, with parameters"
db=$(cl_db lookups)
cl_js node_checks.js lookups "$db"
cl_py psycopg2_checks.py lookups "$db"
# pgbench, prepared (a generic plan after the fifth execution) and
# extended protocol: every transaction must find customer 1042.
phone=$(cl_psql -U crm_dba -d "$db" -tAc "SELECT pii_guard.decrypt(phone) FROM public_pii.customers WHERE id = 1042")
cat >"$PGG_WORK/clients_lookup.pgbench" <<'EOF'
SELECT id AS found FROM customers WHERE phone = :phone \gset
\if :found != 1042
SELECT 1 / 0 AS wrong_customer;
\endif
EOF
for mode in prepared extended; do
	out=$(timeout -k 5 60 pgbench -n -M $mode -t 20 -D phone="$phone" -f "$PGG_WORK/clients_lookup.pgbench" \
		-h "$(pgg_sock $name)" -p 5432 -U support_dan "$db" 2>&1)
	cl_ok "pgbench -M $mode, support_dan: 20 lookups by phone, each finds customer 1042" \
		"$(grep -E 'error|ERROR|DETAIL|processed' <<<"$out")" \
		grep -q "number of transactions actually processed: 20/20" <<<"$out"
done

# A guard (it holds today, and must after the fix): a filter that reads a
# protected column of every row still counts the rows it examines -- else
# an intern could take, 20 rows a day or not, the ids of every customer
# whose masked name starts with a surname.
out=$(cl_psql -U intern_fay -d "$db" -v VERBOSITY=verbose -c "SELECT id FROM customers WHERE name LIKE '彭%'" 2>&1)
cl_ok "psql, intern_fay: WHERE name LIKE '彭%' (a filter on every customer's masked name) still counts the rows it examines: 54P01" \
	"$out" grep -q "ERROR:  54P01" <<<"$out"

#---------------------------------------------------------------------------
# 2. and 3. sales_bob's writes: one UPDATE of all his customers, INSERT ...
#    RETURNING id, bulk imports through the view.
#---------------------------------------------------------------------------
echo "  # 2., 3. sales_bob's writes: an UPDATE of all his customers, INSERT ... RETURNING, bulk imports"
cl_py psycopg2_checks.py bob_writes "$(cl_db bob_writes)"
cl_js node_checks.js copy_in "$(cl_db copy_in)"

#---------------------------------------------------------------------------
# 4. Upserts; 5. ORM saves write no mask back.
#---------------------------------------------------------------------------
echo "  # 4. upserts through the view (mgr_eve)"
cl_py psycopg2_checks.py upserts "$(cl_db upserts)"
echo "  # 5. saves write no mask back: raw SQL, Django, Sequelize (and 2., 4. as the ORMs do them)"
cl_py psycopg2_checks.py raw_updates "$(cl_db raw_updates)"
cl_py django_checks.py all "$(cl_db django)"
cl_js sequelize_checks.js all "$(cl_db sequelize)"

#---------------------------------------------------------------------------
# 6. Exports within and beyond the limits.
#---------------------------------------------------------------------------
echo "  # 6. exports within and beyond the limits"
# psql shows what reached the client before the refusal.
db=$(cl_db export_psql)
out=$(cl_psql -U intern_fay -d "$db" -v VERBOSITY=verbose \
	-c "COPY (SELECT id, name, phone FROM customers ORDER BY id) TO STDOUT" 2>&1)
pgg_is "psql, intern_fay: COPY (SELECT id, name, phone ...) TO STDOUT: 20 masked rows arrive before the refusal" \
	"$(grep -cE '^[0-9]+	[^	]+	[0-9]{3}\*{4}[0-9]{4}$' <<<"$out")" 20
cl_ok "psql, intern_fay: ... then 54P01, naming the limit" "$(grep -E 'ERROR|DETAIL' <<<"$out")" \
	grep -qE "^DETAIL:  The limit is 20 protected rows per (statement|24 hours)" <<<"$out"
cl_js node_checks.js export_copy "$(cl_db export_copy)"
cl_js node_checks.js export_cursor "$(cl_db export_cursor)"
cl_js node_checks.js copy_view "$(cl_db copy_view)"

#---------------------------------------------------------------------------
# 7. Introspection; 8. pg_dump as the owner.
#---------------------------------------------------------------------------
echo "  # 7. what ORMs' introspection sees"
cl_js node_checks.js introspection lookups
echo "  # 8. pg_dump as crm_dba"
# (the README's options for an owner in pii_guard_admin: the data keys
# and the audit trail are not theirs to read; scenario dump_owner restores
# such dumps)
out=$(timeout -k 5 120 pg_dump -h "$(pgg_sock $name)" -p 5432 -U crm_dba -d crm -f "$PGG_WORK/clients_crm.sql" \
	--exclude-table-data=pii_guard.data_keys --exclude-table-data='pii_guard.audit_log*' 2>&1)
rc=$?
cl_ok "pg_dump -U crm_dba crm with the README's options succeeds" "$out" test "$rc" -eq 0
