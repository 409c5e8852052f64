#!/usr/bin/env bash
# Install what `make test`, `make demo` and `make bench` need on Debian 12.
# As root: apt-get installs whatever is missing.  As anyone else: print the
# exact apt-get line and fail, so nothing is ever installed behind your back.
#
#   test/deps.sh [clients] [extra-package ...]
#
# "clients": also what test/scenario/clients.sh drives the masking views
# with (make test's scenario stage asks for it): Debian's python3-psycopg2
# and python3-django, and Node.js and npm for the npm packages that the
# scenario installs itself (node-postgres, Sequelize: npm ci from
# test/clients/package-lock.json into its work directory).
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
extra=()
for arg in "$@"; do
	if [ "$arg" = clients ]; then
		extra+=(python3-psycopg2 python3-django)
		# Debian's nodejs and npm, unless a node and an npm are there
		# already (NodeSource's nodejs bundles npm and conflicts with
		# Debian's npm package).
		if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
			extra+=(nodejs npm)
		fi
	else
		extra+=("$arg")
	fi
done
packages=(
	gcc make
	"postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR"
	libssl-dev
	"postgresql-$PG_MAJOR-pgtap" libtap-parser-sourcehandler-pgtap-perl
	"${extra[@]}"
)

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "pii_guard: missing packages: ${missing[*]}" >&2
	echo "Install them as root, then run this again:" >&2
	echo "    $line" >&2
	exit 1
fi

echo "pii_guard: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
