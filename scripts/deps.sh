#!/usr/bin/env bash
# Installs the server binaries and clients that `make test` and `make demo`
# use: PostgreSQL (server, psql, pgbench), Redis (server, redis-cli,
# redis-benchmark) and Prometheus (prometheus and promtool, for the test that
# evaluates the Grafana dashboard and the alert rules in deploy/ against a
# real Prometheus). `deps.sh bench` also installs the peers the benchmark
# harness (bench/sidebyside, `make bench`) compares against: pgbouncer,
# nutcracker (twemproxy) and haproxy.
# On Debian/Ubuntu as root it runs apt-get; otherwise it prints the command.
set -euo pipefail

have_pg() {
	command -v pgbench >/dev/null && command -v psql >/dev/null || return 1
	command -v initdb >/dev/null && return 0
	command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] && return 0
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

missing=()
have_pg || missing+=(postgresql postgresql-contrib)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
if [ "${1:-}" = bench ]; then
	# Debian installs these daemons under /usr/sbin, which a non-root PATH
	# may lack; the harness looks there too.
	PATH="$PATH:/usr/sbin:/sbin"
	command -v pgbouncer >/dev/null || missing+=(pgbouncer)
	command -v nutcracker >/dev/null || missing+=(nutcracker)
	command -v haproxy >/dev/null || missing+=(haproxy)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	$cmd -qq >/dev/null
	# The Debian packages start a cluster, a redis and a prometheus service
	# where services can start; tests start their own servers on free ports,
	# so these are left alone.
else
	echo "deps: missing ${missing[*]}; install them with:" >&2
	echo "  sudo apt-get update && sudo $cmd" >&2
	exit 1
fi
