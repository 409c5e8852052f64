# test/lib.sh -- throwaway PostgreSQL clusters for tests, demo and benchmarks.
#
# Sourced, not run.  Everything lives under one work directory ($PGG_WORK)
# that pgg_cleanup stops and removes, also on failure and Ctrl-C:
#
#   $PGG_WORK/inst/     a private installation: the server binaries copied
#                       (PostgreSQL finds its share and lib directories
#                       relative to the binary), everything else symlinked to
#                       the system's, plus pii_guard installed by DESTDIR.
#                       No root needed, and the system's PostgreSQL is never
#                       touched.
#   $PGG_WORK/keys/     master key files, readable by the server only
#   $PGG_WORK/<name>/   one cluster: data/ and its unix socket (no TCP);
#                       under $PGG_CLUSTER_ROOT instead when that is set
#                       (test/run.sh gives each scenario its own, so that
#                       scenarios running at the same time stop only their
#                       own clusters)
#
# As root the server runs as the "postgres" user (PostgreSQL refuses root).
#
# SANITIZE=1 (make test-memcheck): pii_guard is built with GCC's
# AddressSanitizer and UndefinedBehaviorSanitizer, in a copy of the sources
# ($PGG_WORK/build-sanitize, so the tree's own objects stay as they are),
# and every server starts with the ASan runtime preloaded (the postgres
# binary itself is not instrumented).  Reports go to $PGG_WORK/sanitizer/
# (that of the outermost run); pgg_sanitizer_report sorts them.

PG_MAJOR=${PG_MAJOR:-15}
PGG_REPO=${PGG_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
PGG_CLUSTERS=()

pgg_die() { echo "pii_guard: $*" >&2; exit 1; }

# Run a command as the server's OS user.
pgg_as_server() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# Create the work directory and register cleanup.
pgg_init() {
	PGG_WORK=$(mktemp -d "${TMPDIR:-/tmp}/pii_guard.XXXXXX")
	chmod 755 "$PGG_WORK"
	export PGG_WORK
	unset PGG_CLUSTER_ROOT		# (a nested run's clusters are its own)
	trap pgg_cleanup EXIT
	trap 'echo "pii_guard: interrupted" >&2; exit 130' INT TERM HUP
}

pgg_cleanup() {
	local rc=$?
	pgg_stop_all
	if [ -n "${PGG_WORK:-}" ] && [ -d "$PGG_WORK" ]; then
		if [ -n "${KEEP:-}" ]; then
			echo "pii_guard: KEEP is set; leaving $PGG_WORK" >&2
		else
			rm -rf "$PGG_WORK"
		fi
	fi
	return $rc
}

# Recursively symlink what $1 has and $2 lacks.
pgg_shadow() {
	local src=$1 dst=$2 f base
	mkdir -p "$dst"
	for f in "$src"/*; do
		base=$(basename "$f")
		if [ ! -e "$dst/$base" ] && [ ! -L "$dst/$base" ]; then
			ln -s "$f" "$dst/$base"
		elif [ -d "$f" ] && [ -d "$dst/$base" ] && [ ! -L "$dst/$base" ]; then
			pgg_shadow "$f" "$dst/$base"
		fi
	done
}

# Build pii_guard and install it into a private copy of the installation.
pgg_install() {
	local bindir libdir sharedir inst=$PGG_WORK/inst build=$PGG_REPO
	bindir=$("$PG_CONFIG" --bindir)
	libdir=$("$PG_CONFIG" --pkglibdir)
	sharedir=$("$PG_CONFIG" --sharedir)
	if [ -n "${SANITIZE:-}" ]; then
		# Sources only: objects built without the sanitizers would be reused.
		build=$PGG_WORK/build-sanitize
		mkdir -p "$build/src" "$build/sql"
		cp "$PGG_REPO/Makefile" "$PGG_REPO/pii_guard.control" "$build/"
		cp "$PGG_REPO"/src/*.[ch] "$build/src/"
		cp "$PGG_REPO"/sql/pii_guard--*.sql "$build/sql/"
		pgg_sanitizer_env
	fi
	make -s -C "$build" PG_CONFIG="$PG_CONFIG" WERROR=1 SANITIZE="${SANITIZE:-}" >/dev/null ||
		pgg_die "build failed"
	make -s -C "$build" PG_CONFIG="$PG_CONFIG" SANITIZE="${SANITIZE:-}" install \
		DESTDIR="$inst" >/dev/null ||
		pgg_die "install into $inst failed"
	mkdir -p "$inst$bindir"
	cp "$bindir/postgres" "$bindir/initdb" "$bindir/pg_ctl" "$inst$bindir/"
	pgg_shadow "$libdir" "$inst$libdir"
	pgg_shadow "$sharedir" "$inst$sharedir"
	PGG_SERVER_BIN=$inst$bindir
	PGG_CLIENT_BIN=$bindir
	export PATH="$PGG_CLIENT_BIN:$PATH"

	mkdir -p "$PGG_WORK/keys"
	cp "$PGG_REPO"/test/keys/*.hex "$PGG_WORK/keys/"
	chmod 600 "$PGG_WORK"/keys/*.hex
	if [ "$(id -u)" -eq 0 ]; then
		chown -R postgres "$PGG_WORK/keys"
	fi
}

# The environment every server starts with (empty unless SANITIZE is set).
PGG_SERVER_ENV=()

# Sanitizer runtime and options for the servers.  ASan errors abort the
# process (the postmaster then restarts the cluster: tests fail loudly);
# UBSan reports and continues; LeakSanitizer checks each process as it
# exits without changing its exit status (a backend exiting non-zero would
# make the postmaster restart the cluster), unwinding through libraries
# built without frame pointers (OpenSSL, PostgreSQL) so that a leak's stack
# shows who allocated it.
pgg_sanitizer_env() {
	local asan initfirst=$PGG_WORK/asan_initfirst.so
	asan=$(gcc -print-file-name=libasan.so)
	[ -e "$asan" ] || pgg_die "libasan not found (gcc -print-file-name=libasan.so)"
	# ASan must initialise before the server's other libraries: see the file.
	gcc -shared -fPIC -Wl,-z,initfirst -o "$initfirst" \
		"$PGG_REPO/test/memcheck/asan_initfirst.c" -L"$(dirname "$asan")" -lasan ||
		pgg_die "could not build $initfirst"
	# (Inherited by nested runs -- the demo scenario -- whose reports count too.)
	export PGG_SANITIZER_DIR=${PGG_SANITIZER_DIR:-$PGG_WORK/sanitizer}
	mkdir -p "$PGG_SANITIZER_DIR"
	chmod 777 "$PGG_SANITIZER_DIR"
	PGG_SERVER_ENV=(
		"LD_PRELOAD=$asan $initfirst"
		"ASAN_OPTIONS=log_path=$PGG_SANITIZER_DIR/asan:abort_on_error=1:detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=30:detect_stack_use_after_return=0"
		"LSAN_OPTIONS=exitcode=0"
		"UBSAN_OPTIONS=log_path=$PGG_SANITIZER_DIR/ubsan:print_stacktrace=1:halt_on_error=0"
	)
}

# Sort the sanitizer reports of every server of this run: errors and leaks
# whose stack passes through pii_guard are ours and fail; leaks allocated
# elsewhere (PostgreSQL's own, OpenSSL's start-up, the shell that runs the
# master key command) are counted and not shown.
pgg_sanitizer_report() {
	local dir=${PGG_SANITIZER_DIR:-$PGG_WORK/sanitizer}
	[ -d "$dir" ] || { echo "sanitizer: no report directory"; return 1; }
	awk '
		function flush() {
			if (block == "")
				return
			# (our frames: the library, or our sources, built with -g)
			if (block ~ /pii_guard\.so| src\/[a-z_]+\.[ch]:[0-9]/) {
				ours++
				if (shown++ < 10)
					printf "---- %s\n%s\n", blockfile, block
			} else if (kind == "leak")
				other_leaks++
			else {
				other_errors++
				if (shown++ < 10)
					printf "---- %s (not in pii_guard)\n%s\n", blockfile, block
			}
			block = ""
		}
		FNR == 1 { flush() }
		/^(Direct|Indirect) leak of / { flush(); kind = "leak"; block = $0; blockfile = FILENAME; next }
		/ERROR: AddressSanitizer|runtime error:/ { flush(); kind = "error"; block = $0; blockfile = FILENAME; next }
		/^$|^SUMMARY:/ { flush(); next }
		block != "" { block = block "\n" $0 }
		END {
			flush()
			printf "sanitizer: %d report(s) in pii_guard, %d error(s) elsewhere; %d leak(s) allocated outside pii_guard not counted\n", ours, other_errors, other_leaks
			exit (ours + other_errors > 0)
		}' /dev/null $(find "$dir" -type f | sort)
}

pgg_root() { echo "${PGG_CLUSTER_ROOT:-$PGG_WORK}"; }
pgg_data() { echo "$(pgg_root)/$1/data"; }
pgg_sock() { echo "$(pgg_root)/$1"; }

# pgg_new_cluster NAME [postgresql.conf line ...]
# initdb with superuser "postgres" and pii_guard preloaded under test key 1.
pgg_new_cluster() {
	local name=$1
	shift
	local dir
	dir=$(pgg_root)/$name
	mkdir -p "$(pgg_root)"
	chmod 755 "$(pgg_root)"
	mkdir -p "$dir"
	if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; fi
	pgg_as_server "$PGG_SERVER_BIN/initdb" -D "$dir/data" -U postgres -A trust \
		-E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; pgg_die "initdb failed"; }
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "port = 5432"
		echo "shared_preload_libraries = 'pii_guard'"
		echo "pii_guard.master_key_command = 'cat $PGG_WORK/keys/test-master-1.hex'"
		echo "fsync = off"
		echo "max_connections = 40"
		echo "log_line_prefix = '%m [%p] %q%u@%d '"
		local line
		for line in "$@"; do echo "$line"; done
	} | pgg_as_server tee -a "$dir/data/postgresql.conf" >/dev/null
	PGG_CLUSTERS+=("$name")
}

# Append settings to a cluster's configuration (effective on restart).
pgg_conf() {
	local name=$1
	shift
	local line
	for line in "$@"; do echo "$line"; done |
		pgg_as_server tee -a "$(pgg_data "$name")/postgresql.conf" >/dev/null
}

pgg_start() {	# (PGG_CORE=1: let the server write core files, into its data directory)
	local name=$1
	pgg_as_server env "${PGG_SERVER_ENV[@]}" "$PGG_SERVER_BIN/pg_ctl" \
		-D "$(pgg_data "$name")" -w -t 60 ${PGG_CORE:+-c} \
		-l "$(pgg_log "$name")" start >/dev/null ||
		{ tail -20 "$(pgg_log "$name")" >&2; pgg_die "cluster $name did not start"; }
}

pgg_stop() {
	local name=$1 mode=${2:-fast}
	[ -f "$(pgg_data "$name")/postmaster.pid" ] || return 0
	pgg_as_server "$PGG_SERVER_BIN/pg_ctl" -D "$(pgg_data "$name")" -w -t 60 \
		-m "$mode" stop >/dev/null
}

# Stop every cluster under the work directory, tracked or not (a scenario
# runs in a subshell, so its clusters are not in PGG_CLUSTERS), and those of
# a nested run's work directory inside it (test/scenario/demo.sh runs the
# demo with TMPDIR=$PGG_WORK and KEEP=1: an interrupt must not leave its
# cluster running).
pgg_stop_all() {
	local w=${PGG_WORK:-/nonexistent}
	pgg_stop_under "$w" "$w"/scenarios/* "$w"/pii_guard.* "$w"/scenarios/*/pii_guard.*
}

# Stop the clusters directly under each directory given (test/run.sh: one
# scenario's, when it ends).
pgg_stop_under() {
	local root pid_file
	for root in "$@"; do
		for pid_file in "$root"/*/data/postmaster.pid; do
			[ -f "$pid_file" ] || continue
			pgg_as_server "$PGG_SERVER_BIN/pg_ctl" -D "$(dirname "$pid_file")" \
				-m immediate -w -t 30 stop >/dev/null 2>&1 || true
		done
	done
}

pgg_restart() {
	pgg_stop "$1"
	pgg_start "$1"
}

pgg_log() { echo "$(pgg_root)/$1/server.log"; }

# pgg_psql NAME [psql args ...]: quiet psql as superuser, stops on error.
pgg_psql() {
	local name=$1
	shift
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock "$name")" -p "$(pgg_port "$name")" -U postgres "$@"
}

# A cluster's port: 5432, unless a file "port" beside its data says
# otherwise (clusters that also listen on TCP: test/citus/lib.sh).
pgg_port() {
	local port=5432 f
	f=$(pgg_root)/$1/port
	[ -f "$f" ] && read -r port <"$f"
	echo "$port"
}

# Connection environment for clients that take PG* variables.
pgg_env() {
	export PGHOST
	PGHOST=$(pgg_sock "$1")
	export PGPORT=5432 PGUSER=postgres
}

# Assertions for scenario scripts: print "ok"/"not ok" and count failures.
PGG_FAILS=0
pgg_ok() {	# pgg_ok DESCRIPTION COMMAND...
	local desc=$1
	shift
	if "$@"; then
		echo "  ok - $desc"
	else
		echo "  not ok - $desc"
		PGG_FAILS=$((PGG_FAILS + 1))
	fi
}
pgg_is() {	# pgg_is DESCRIPTION ACTUAL EXPECTED
	if [ "$2" = "$3" ]; then
		echo "  ok - $1"
	else
		echo "  not ok - $1"
		echo "    got:      $2"
		echo "    expected: $3"
		PGG_FAILS=$((PGG_FAILS + 1))
	fi
}
pgg_done() { [ "$PGG_FAILS" -eq 0 ]; }

# --- what scenario scripts share ----------------------------------------------

# pgg_wait SECONDS COMMAND...: run COMMAND every 0.1 s until it succeeds, for
# at most SECONDS (whole seconds, or with tenths: 1.2); the status of its
# last run.
pgg_wait() {
	local whole=${1%%.*} frac tenths i
	frac=${1#"$whole"}
	frac=${frac#.}
	frac=${frac:0:1}
	tenths=$((10#${whole:-0} * 10 + 10#${frac:-0}))
	shift
	for ((i = 1; i < tenths; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	"$@"
}

# pgg_gone PID [SECONDS]: wait until process PID has ended (default 10 s).
pgg_gone() {
	local pid=$1
	pgg_wait "${2:-10}" pgg_not_running "$pid"
}
# pgg_not_running PID...: none of these processes runs (any more).
pgg_not_running() { ! kill -0 "$@" 2>/dev/null; }

# pgg_accepts CLUSTER [DATABASE]: the server accepts connections (to that
# database; postgres by default) -- after a start, a crash, a restart.
pgg_accepts() { pgg_psql "$1" -d "${2:-postgres}" -tAc "SELECT 1" >/dev/null 2>&1; }

# pgg_worker_now CLUSTER [DATABASE_OID]: the pid of the cluster's audit
# worker (of that database's, when given) if one runs now; fails if none.
# (Its parent is this cluster's postmaster: other clusters on the machine,
# a scenario running beside this one, have audit workers too.)
pgg_worker_now() {
	local postmaster pattern="pii_guard audit worker" pid
	[ -z "${2:-}" ] || pattern="pii_guard audit worker for database $2( |\$)"
	postmaster=$(head -1 "$(pgg_data "$1")/postmaster.pid" 2>/dev/null)
	pid=$(pgrep -P "${postmaster:-0}" -f "$pattern" | head -1)
	[ -n "$pid" ] && echo "$pid"
}

# pgg_worker_pid CLUSTER [DATABASE_OID]: the pid of the cluster's audit
# worker (of that database's, when given), waiting for it up to 15 s (a
# crash restart included); empty if none.
pgg_worker_pid() {
	pgg_wait 15 pgg_worker_now "$@" || true
}

# pgg_db_oid CLUSTER DATABASE: its OID.
pgg_db_oid() { pgg_psql "$1" -d postgres -tAc "SELECT oid FROM pg_database WHERE datname = '$2'"; }

# pgg_new_db CLUSTER DATABASE: a database with pii_guard in it.
pgg_new_db() {
	pgg_psql "$1" -d postgres -c "CREATE DATABASE $2" &&
		pgg_psql "$1" -d "$2" -c "CREATE EXTENSION pii_guard"
}

# pgg_protected_table CLUSTER DATABASE TABLE ROWS ROLE: TABLE (id integer
# primary key, phone encrypted_text: 1380000nnnn) with ROWS rows, protected
# (phone sensitive, masked as a phone), and ROLE (created, LOGIN) a profile
# of clearance sensitive that may read it.
pgg_protected_table() {
	pgg_psql "$1" -d "$2" <<SQL
SET client_min_messages = warning;
DO \$\$ BEGIN CREATE ROLE $5 LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$;
CREATE TABLE $3 (id int PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO $3 SELECT g, '1380000' || lpad(g::text, 4, '0') FROM generate_series(1, $4) g;
GRANT SELECT ON $3 TO $5;
SELECT pii_guard.protect_column('$3', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.set_clearance('$5', 'sensitive');
SQL
}

# pgg_events CLUSTER DATABASE KIND [AFTER_EVENT_ID]: how many audit events of
# KIND (read, write, export, deny, admin) there are after that event.
pgg_events() {
	pgg_psql "$1" -d "$2" -tAc "SELECT count(*) FROM pii_guard.audit_log
	                             WHERE kind = '$3' AND event_id > ${4:-0}"
}

# pgg_unsealed CLUSTER DATABASE: how many audit events have no seal yet.
pgg_unsealed() {
	pgg_psql "$1" -d "$2" -tAc "SELECT count(*) FROM pii_guard.audit_log a
	                             WHERE NOT EXISTS (SELECT 1 FROM pii_guard.audit_seal s
	                                                WHERE s.event_id = a.event_id)"
}

# pgg_all_sealed CLUSTER DATABASE: every audit event is sealed.
pgg_all_sealed() { [ "$(pgg_unsealed "$1" "$2")" = 0 ]; }

# pgg_audit_settled CLUSTER DATABASE: the audit queue is empty and every
# event sealed -- the worker has written and sealed all there was.
pgg_audit_settled() {
	[ "$(pgg_psql "$1" -d "$2" -tAc "SELECT queued FROM pii_guard.audit_queue_status()")" = 0 ] &&
		pgg_all_sealed "$1" "$2"
}
