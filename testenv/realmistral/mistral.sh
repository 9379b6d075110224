#!/usr/bin/env bash
# mistral.sh: install, start and stop a real OpenStack Mistral 15 (Debian
# bookworm packages) for mistral-tap's end-to-end tests.
#
#   mistral.sh install   apt-get the packages (no-op when installed)
#   mistral.sh start     PostgreSQL + RabbitMQ + mistral-server, wait for the API
#   mistral.sh stop      stop all three, verify the ports are free
#   mistral.sh status    what is running
#   mistral.sh env       export lines for the tests (eval "$(mistral.sh env)")
#   mistral.sh logs      tail of every log
#
# Everything runs on our own ports and data dirs under $MISTRAL_E2E_DIR, so
# services the Debian packages may have started on the default ports do not
# matter. Facts behind the choices: /work/shared/docs/mistral-api.md §8.
set -euo pipefail

STATE_DIR=${MISTRAL_E2E_DIR:-/tmp/mistral-e2e}
API_HOST=127.0.0.1
API_PORT=${MISTRAL_E2E_API_PORT:-18989}
PG_PORT=${MISTRAL_E2E_PG_PORT:-15432}
RABBIT_PORT=${MISTRAL_E2E_RABBIT_PORT:-15672}
RABBIT_DIST_PORT=$((RABBIT_PORT + 1))
# Our own epmd port: the Erlang port mapper outlives the broker, and a private
# port lets stop kill exactly ours without touching a system RabbitMQ.
EPMD_PORT=${MISTRAL_E2E_EPMD_PORT:-14369}
RABBIT_NODE=mistral-e2e@localhost
START_TIMEOUT=${MISTRAL_E2E_START_TIMEOUT:-120}
# Seconds between SIGTERM and SIGKILL of mistral-server (see stop_mistral).
STOP_GRACE=${MISTRAL_E2E_STOP_GRACE:-5}

PG_BIN=/usr/lib/postgresql/15/bin
PG_DATA=$STATE_DIR/pg/data
PG_SOCK=$STATE_DIR/pg/sock
RABBIT_DIR=$STATE_DIR/rabbitmq
CONF=$STATE_DIR/mistral.conf
MISTRAL_LOG=$STATE_DIR/mistral.log
MISTRAL_OUT=$STATE_DIR/mistral-server.out
MISTRAL_PID=$STATE_DIR/mistral-server.pid
MISTRAL_URL=http://$API_HOST:$API_PORT

PACKAGES=(python3-mistral mistral-common python3-mistralclient rabbitmq-server
	postgresql python3-psycopg2)

export ERL_EPMD_PORT=$EPMD_PORT

SCRIPT_NAME=mistral.sh
# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

api_up() { curl -fs -o /dev/null --max-time 5 "$MISTRAL_URL/v2/workflows"; }

# wait_gone PID...: wait up to 10 s for the processes to exit.
wait_gone() {
	local deadline=$((SECONDS + 10))
	while kill -0 "$@" 2>/dev/null && ((SECONDS < deadline)); do
		sleep 0.2
	done
}

# ---------------------------------------------------------------------------
# install


cmd_install() {
	if installed; then
		log "packages already installed"
		return
	fi
	local t0=$SECONDS
	# Refresh the lists if they are missing or older than a day.
	if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1) ]]; then
		apt-get update
	fi
	# Keep postinst scripts from starting system services (postgresql,
	# rabbitmq-server on 5432/5672): we run our own instances. policy-rc.d
	# exit 101 means "action forbidden" to invoke-rc.d. Keep an existing one.
	local policy=/usr/sbin/policy-rc.d ours=
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod +x "$policy"
		ours=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}" ||
		{ [[ -n $ours ]] && rm -f "$policy"; die "apt-get install failed"; }
	[[ -n $ours ]] && rm -f "$policy"
	log "installed in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------------------
# PostgreSQL

pg() { runuser -u postgres -- "$@"; }

start_pg() {
	if port_open "$PG_PORT"; then
		log "postgresql already on :$PG_PORT"
		return
	fi
	mkdir -p "$STATE_DIR/pg" "$PG_SOCK"
	chown -R postgres:postgres "$STATE_DIR/pg"
	if [[ ! -f $PG_DATA/PG_VERSION ]]; then
		# trust auth: loopback only, throwaway data.
		pg "$PG_BIN/initdb" -A trust -U postgres -E UTF8 -D "$PG_DATA" >"$STATE_DIR/pg/initdb.log"
	fi
	pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$STATE_DIR/pg/postgres.log" -w -t 60 \
		-o "-p $PG_PORT -h 127.0.0.1 -k $PG_SOCK" start >/dev/null ||
		{ tail -20 "$STATE_DIR/pg/postgres.log" >&2; die "postgresql did not start"; }
	log "postgresql ready on :$PG_PORT"
}

psql_q() { pg psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "$1"; }

ensure_db() {
	if [[ $(psql_q "select 1 from pg_database where datname='mistral'") != 1 ]]; then
		psql_q "create database mistral" >/dev/null
	fi
}

stop_pg() {
	if [[ -f $PG_DATA/postmaster.pid ]]; then
		local pid
		pid=$(head -1 "$PG_DATA/postmaster.pid")
		pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 || true
		# pg_ctl returns once the pid file is gone, a moment before the
		# postmaster has exited.
		wait_gone "$pid"
	fi
}

# ---------------------------------------------------------------------------
# RabbitMQ

rabbit_env() {
	env RABBITMQ_NODENAME=$RABBIT_NODE \
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		RABBITMQ_NODE_PORT="$RABBIT_PORT" \
		RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" \
		RABBITMQ_MNESIA_BASE="$RABBIT_DIR/mnesia" \
		RABBITMQ_LOG_BASE="$RABBIT_DIR/log" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$RABBIT_DIR/enabled_plugins" \
		RABBITMQ_CONFIG_FILE="$RABBIT_DIR/rabbitmq" \
		ERL_EPMD_PORT="$EPMD_PORT" \
		"$@"
}

start_rabbit() {
	if port_open "$RABBIT_PORT"; then
		log "rabbitmq already on :$RABBIT_PORT"
		return
	fi
	mkdir -p "$RABBIT_DIR/mnesia" "$RABBIT_DIR/log"
	# No plugins: the management plugin would listen on 15672 by default.
	echo '[].' >"$RABBIT_DIR/enabled_plugins"
	# Loopback-only, and no disk alarm on small CI disks.
	printf 'loopback_users = none\ndisk_free_limit.absolute = 50MB\n' >"$RABBIT_DIR/rabbitmq.conf"
	# The Debian wrapper drops to user rabbitmq: root-owned dirs kill the
	# broker at boot (cannot_log_to_file ... eacces).
	chown -R rabbitmq:rabbitmq "$RABBIT_DIR"
	: >"$RABBIT_DIR/server.out"
	# setsid -f: detached in its own session, and we do not wait for it.
	rabbit_env setsid -f rabbitmq-server >"$RABBIT_DIR/server.out" 2>&1 </dev/null
	if ! wait_for rabbitmq 90 grep -q 'Starting broker.*completed' "$RABBIT_DIR/server.out"; then
		tail -30 "$RABBIT_DIR/server.out" >&2
		die "rabbitmq did not start"
	fi
}

stop_rabbit() {
	# Our broker's Erlang VM, matched by its private epmd port (the node
	# name is not on its command line); never a broad pattern.
	local pids
	pids=$(pgrep -f "beam.smp .*-epmd_port $EPMD_PORT " || true)
	if port_open "$RABBIT_PORT" || [[ -n $pids ]]; then
		rabbit_env rabbitmqctl -n "$RABBIT_NODE" stop >/dev/null 2>&1 || true
	fi
	if [[ -n $pids ]]; then
		# shellcheck disable=SC2086 # word splitting wanted: a pid list
		wait_gone $pids
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
	fi
	# Our private epmd (it outlives the VM).
	if port_open "$EPMD_PORT"; then
		epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
		local deadline=$((SECONDS + 5))
		while port_open "$EPMD_PORT" && ((SECONDS < deadline)); do sleep 0.2; done
	fi
}

# ---------------------------------------------------------------------------
# Mistral

write_conf() {
	cat >"$CONF" <<EOF
# Generated by testenv/realmistral/mistral.sh: throwaway test instance.
[DEFAULT]
transport_url = rabbit://guest:guest@127.0.0.1:$RABBIT_PORT/
log_file = $MISTRAL_LOG
debug = false

[api]
host = $API_HOST
port = $API_PORT
api_workers = 1

[database]
connection = postgresql://postgres@127.0.0.1:$PG_PORT/mistral

[pecan]
auth_enable = false

[notifier]
# In-engine notifier: no separate RPC hop, and §8 saw it deliver.
type = local

[oslo_policy]
policy_file = /etc/mistral/policy.json

[event_engine]
# mistral-tap's OpenStack notifications (format oslo) carry the failed
# execution in their payload; these definitions put it into event_params
# (docs/event-triggers.md). Read once, when mistral-server starts.
event_definitions_cfg_file = $STATE_DIR/event_definitions.yaml
EOF
	cat >"$STATE_DIR/event_definitions.yaml" <<'EOF'
- event_types: ['mistral_tap.*']
  properties:
    service: <% $.publisher %>
    project_id: <% $.context.project_id %>
    user_id: <% $.context.user_id %>
    timestamp: <% $.timestamp %>
    event_type: <% $.event_type %>
    execution_id: <% $.payload.id %>
    workflow_name: <% $.payload.workflow_name %>
    state: <% $.payload.state %>
    state_info: <% $.payload.state_info %>
    payload: <% $.payload %>
EOF
}

migrate_db() {
	# Alembic upgrade is idempotent but slow-ish; populate re-syncs the std
	# actions. Do both once per state dir.
	if [[ -f $STATE_DIR/db.done ]]; then
		return
	fi
	log "creating the schema (mistral-db-manage upgrade head + populate)"
	mistral-db-manage --config-file "$CONF" upgrade head >"$STATE_DIR/db-manage.log" 2>&1 ||
		{ tail -30 "$STATE_DIR/db-manage.log" >&2; die "upgrade head failed"; }
	mistral-db-manage --config-file "$CONF" populate >>"$STATE_DIR/db-manage.log" 2>&1 ||
		{ tail -30 "$STATE_DIR/db-manage.log" >&2; die "populate failed"; }
	touch "$STATE_DIR/db.done"
}

mistral_pgid() { group_of "$MISTRAL_PID"; }

start_mistral() {
	if mistral_pgid >/dev/null && api_up; then
		log "mistral already answering on $MISTRAL_URL"
		return
	fi
	if port_open "$API_PORT"; then
		die "port $API_PORT is taken by something we did not start (stale server?); run '$0 stop' or free it"
	fi
	: >"$MISTRAL_LOG"
	# Own session/process group so stop can signal every forked worker.
	setsid mistral-server --config-file "$CONF" --server all >"$MISTRAL_OUT" 2>&1 </dev/null &
	echo $! >"$MISTRAL_PID"
	if ! wait_for "mistral api" "$START_TIMEOUT" api_up; then
		log "mistral did not answer within ${START_TIMEOUT}s; logs:"
		tail -40 "$MISTRAL_OUT" >&2 || true
		tail -60 "$MISTRAL_LOG" >&2 || true
		die "mistral did not start"
	fi
}

stop_mistral() { stop_group mistral "$MISTRAL_PID"; }

# ---------------------------------------------------------------------------
# commands

cmd_start() {
	command -v mistral-server >/dev/null || die "mistral-server not installed: run '$0 install' first"
	local t0=$SECONDS
	mkdir -p "$STATE_DIR"
	chmod 755 "$STATE_DIR"
	start_pg
	ensure_db
	start_rabbit
	write_conf
	migrate_db
	start_mistral
	log "started in $((SECONDS - t0)) s"
	echo "MISTRAL_URL=$MISTRAL_URL"
}

cmd_stop() {
	local t0=$SECONDS
	# Mistral first: with the broker gone it would hang on RPC.
	stop_mistral
	stop_rabbit
	stop_pg
	local p busy=
	for p in "$API_PORT" "$PG_PORT" "$RABBIT_PORT" "$RABBIT_DIST_PORT" "$EPMD_PORT"; do
		if port_open "$p"; then
			log "port $p still in use"
			busy=1
		fi
	done
	[[ -z $busy ]] || die "stop left something listening"
	log "stopped in $((SECONDS - t0)) s"
}

cmd_status() {
	local rc=0
	if api_up; then echo "mistral   up   $MISTRAL_URL (pgid $(mistral_pgid || echo '?'))"; else
		echo "mistral   down"
		rc=1
	fi
	if port_open "$RABBIT_PORT"; then echo "rabbitmq  up   :$RABBIT_PORT ($RABBIT_NODE)"; else
		echo "rabbitmq  down"
		rc=1
	fi
	if port_open "$PG_PORT"; then echo "postgres  up   :$PG_PORT ($PG_DATA)"; else
		echo "postgres  down"
		rc=1
	fi
	return $rc
}

cmd_env() {
	cat <<EOF
export MISTRAL_URL=$MISTRAL_URL
export MISTRAL_E2E_URL=$MISTRAL_URL
export MISTRAL_E2E_DIR=$STATE_DIR
export MISTRAL_E2E_LOG=$MISTRAL_LOG
export MISTRAL_E2E_PG_DSN=postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable
export MISTRAL_E2E_AMQP_URL=amqp://guest:guest@127.0.0.1:$RABBIT_PORT/
EOF
}

cmd_logs() {
	local f
	for f in "$MISTRAL_OUT" "$MISTRAL_LOG" "$RABBIT_DIR/server.out" "$STATE_DIR/pg/postgres.log"; do
		[[ -f $f ]] || continue
		echo "==> $f <=="
		tail -${LINES_TAIL:-40} "$f"
	done
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
restart)
	cmd_stop
	cmd_start
	;;
status) cmd_status ;;
env) cmd_env ;;
logs) cmd_logs ;;
*)
	echo "usage: $0 install|start|stop|restart|status|env|logs" >&2
	exit 2
	;;
esac
