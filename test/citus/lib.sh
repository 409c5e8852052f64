# test/citus/lib.sh -- Citus for `make test-citus` and `make bench-citus`.
#
# Sourced after test/lib.sh, pgg_init and pgg_install.
#
# citus_build: builds Citus once from its source tarball (CITUS_TARBALL;
# default: the peers directory beside the checkout), with CITUS_PATCH (the
# Debian patch beside it, which drops a static copy of
# have_createdb_privilege() that newer PostgreSQL 15 minor releases export)
# -- cached under CITUS_CACHE (default ${TMPDIR:-/tmp}/pii_guard-citus) and
# rebuilt only when the tarball or the patch is newer -- and installs it
# into this run's private installation.
#
# citus_cluster: a coordinator and two workers (clusters coord, w1, w2) on
# localhost TCP ports CITUS_PORT, +1, +2 (+3 for w3, which citus_node adds) (default: the first free from 57301), each preloading
# citus before pii_guard with the same master key, with the citus and
# pii_guard extensions in database crm and the workers added.

CITUS_VERSION=13.2.2
CITUS_PEERS=${CITUS_PEERS:-$PGG_REPO/../shared/peers}
CITUS_TARBALL=${CITUS_TARBALL:-$CITUS_PEERS/citus-$CITUS_VERSION.tar.gz}
CITUS_PATCH=${CITUS_PATCH:-$CITUS_PEERS/citus-pg15-debian.patch}
CITUS_CACHE=${CITUS_CACHE:-${TMPDIR:-/tmp}/pii_guard-citus}
CITUS_NODES=(coord w1 w2 w3)	# (w3: a worker added later, by a test)

# The first of four free ports from 57301 on, ten apart (another run, or a
# developer's cluster, may hold some).
citus_free_ports() {
	local base p busy
	for ((base = 57301; base < 58301; base += 10)); do
		busy=
		for ((p = base; p < base + ${#CITUS_NODES[@]}; p++)); do
			if (: </dev/tcp/127.0.0.1/$p) 2>/dev/null; then busy=1; break; fi
		done
		[ -z "$busy" ] && { echo "$base"; return; }
	done
	pgg_die "no four free TCP ports from 57301 on"
}
CITUS_PORT=${CITUS_PORT:-$(citus_free_ports)}

# What building Citus needs beyond make test's packages (as root: installed).
citus_deps() {
	"$PGG_REPO/test/deps.sh" patch openssl liblz4-dev libzstd-dev libkrb5-dev
}

citus_build() {
	local dir=$CITUS_CACHE/citus-$CITUS_VERSION-pg$PG_MAJOR
	[ -f "$CITUS_TARBALL" ] || pgg_die "$CITUS_TARBALL not found (set CITUS_TARBALL)"
	if [ ! -f "$dir/.built" ] || [ "$CITUS_TARBALL" -nt "$dir/.built" ] ||
		{ [ -f "$CITUS_PATCH" ] && [ "$CITUS_PATCH" -nt "$dir/.built" ]; }; then
		echo "pii_guard: building Citus $CITUS_VERSION (once; cached in $dir, about 4 minutes on 2 cores)"
		rm -rf "$dir"
		mkdir -p "$dir/src"
		tar -xzf "$CITUS_TARBALL" -C "$dir/src" --strip-components=1 ||
			pgg_die "could not unpack $CITUS_TARBALL"
		if [ -f "$CITUS_PATCH" ]; then
			patch -d "$dir/src" -p1 -s <"$CITUS_PATCH" || pgg_die "could not apply $CITUS_PATCH"
		fi
		(cd "$dir/src" && ./configure --without-libcurl PG_CONFIG="$PG_CONFIG" &&
			make -j"$(nproc)" && make install DESTDIR="$dir/dest") >"$dir/build.log" 2>&1 ||
			{ tail -20 "$dir/build.log" >&2; pgg_die "Citus build failed (see $dir/build.log)"; }
		touch "$dir/.built"
	fi
	# The modules and the extension scripts (not the JIT bitcode: the private
	# installation's bitcode directory is the system's, symlinked).
	local lib share
	lib=$("$PG_CONFIG" --pkglibdir)
	share=$("$PG_CONFIG" --sharedir)
	cp -a "$dir/dest$lib"/*.so "$dir/dest$lib"/citus_decoders "$PGG_WORK/inst$lib/"
	cp -a "$dir/dest$share/extension/." "$PGG_WORK/inst$share/extension/"
}

citus_port() {	# citus_port NODE
	local i
	for i in "${!CITUS_NODES[@]}"; do
		[ "${CITUS_NODES[$i]}" = "$1" ] && { echo $((CITUS_PORT + i)); return; }
	done
	pgg_die "no Citus node $1"
}

# psql on a node over TCP (the address Citus uses between the nodes).
citus_psql() {	# citus_psql NODE [psql args...]
	local node=$1
	shift
	psql -X -q -v ON_ERROR_STOP=1 -h localhost -p "$(citus_port "$node")" -U postgres \
		-d "${CITUS_DB:-crm}" "$@"
}

# A node: its cluster created and started, database crm with Citus in it.
citus_node() {	# citus_node NODE
	local node=$1
	pgg_new_cluster "$node" "listen_addresses = 'localhost'" "port = $(citus_port "$node")" \
		"shared_preload_libraries = 'citus,pii_guard'" "max_connections = 100" \
		"max_prepared_transactions = 100" "wal_level = logical" \
		"citus.max_client_connections = 90"
	citus_port "$node" >"$(pgg_root)/$node/port"	# (for pgg_psql and what uses it)
	pgg_start "$node"
	CITUS_DB=postgres citus_psql "$node" -c "CREATE DATABASE crm"
	citus_psql "$node" -c "CREATE EXTENSION citus"
}

citus_cluster() {
	local node
	for node in coord w1 w2; do
		citus_node "$node"
	done
	citus_psql coord -c "SELECT citus_set_coordinator_host('localhost', $(citus_port coord))" >/dev/null
	for node in w1 w2; do
		citus_psql coord -c "SELECT citus_add_node('localhost', $(citus_port "$node"))" >/dev/null
	done
}

# TLS between the nodes: the coordinator presents a client certificate of
# its own (CN pii_guard-cluster) through citus.node_conninfo, the workers
# one of another name (pii_guard-worker: a worker's own connections to the
# others -- a distributed query a function plans there -- are not the
# coordinator's), and the workers' login gate admits the coordinator's
# (pii_guard.cluster_peer_cn): a worker admits a role other than a
# superuser only from the coordinator -- and reveals protected shards only
# to such connections.  Certificates in $PGG_WORK/tls (ca, server, cluster,
# worker; citus_cert makes more); every node restarted.
citus_cert() {	# citus_cert NAME CN [CA]: a key and a certificate signed by CA (default ca)
	local tls=$PGG_WORK/tls
	openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$tls/$1.key" -out "$tls/$1.csr" 2>/dev/null
	openssl x509 -req -in "$tls/$1.csr" -CA "$tls/${3:-ca}.crt" -CAkey "$tls/${3:-ca}.key" \
		-CAcreateserial -days 2 -out "$tls/$1.crt" 2>/dev/null
	chmod 600 "$tls/$1.key"
}

citus_tls() {	# citus_tls NODE... (the certificates made at the first call)
	local tls=$PGG_WORK/tls node
	if [ ! -f "$tls/cluster.crt" ]; then
		mkdir -p "$tls"
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=pii_guard test ca" \
			-keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
		citus_cert server localhost
		citus_cert cluster pii_guard-cluster
		citus_cert worker pii_guard-worker
		if [ "$(id -u)" -eq 0 ]; then chown postgres "$tls"/server.key "$tls"/cluster.key "$tls"/worker.key; fi
	fi
	for node in "$@"; do
		local cert=worker
		[ "$node" = coord ] && cert=cluster
		pgg_conf "$node" "ssl = on" "ssl_cert_file = '$tls/server.crt'" "ssl_key_file = '$tls/server.key'" \
			"ssl_ca_file = '$tls/ca.crt'" \
			"citus.node_conninfo = 'sslmode=require sslcert=$tls/$cert.crt sslkey=$tls/$cert.key'"
		[ "$node" = coord ] || pgg_conf "$node" "pii_guard.cluster_peer_cn = 'pii_guard-cluster'"
		pgg_stop "$node"
		pgg_start "$node"
	done
}
