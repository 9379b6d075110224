#!/usr/bin/env bash
# keystone.sh: a real Keystone 22 (Debian's python3-keystone under the
# standard library's wsgiref server) and a second, auth-on Mistral 15 for
# mistral-tap's end-to-end tests with Keystone auth on.
#
#   keystone.sh install   apt-get python3-keystone (no-op when installed)
#   keystone.sh start     Keystone (+ a short-token twin), projects, users,
#                         and an auth-on mistral-server --server all
#   keystone.sh stop      stop what this script started, verify the ports
#   keystone.sh status    what is running
#   keystone.sh env       export lines for the tests (MISTRAL_E2E_AUTH_*)
#   keystone.sh logs      tail of every log
#
# It needs the PostgreSQL (:15432) and RabbitMQ (:15672) that
# testenv/realmistral/mistral.sh runs, and shares nothing else with the
# auth-off Mistral on :18989: an auth-on API cannot share an engine with an
# auth-off one (the engine files everything under "<default-project>"), so
# this Mistral has its own database (mistral_auth), its own control exchange
# and RPC topics, and its own API port. Facts: /work/shared/docs/keystone.md.
#
# Identity layout (all in domain Default; every password is $AUTH_PASSWORD):
#   project admin    user admin (Keystone's bootstrap admin; Mistral's own
#                    keystone_authtoken user)
#   project demo     user demo-user, role member
#   project alt      user alt-user, role member
#   project service  user mistral-tap, role admin (executions:list:all_projects)
#                    and role reader inherited on domain Default, so that it
#                    can scope a token to every project (tasks and workbooks
#                    are only listed per project); see docs/auth.md.
set -euo pipefail

STATE_DIR=${MISTRAL_E2E_AUTH_DIR:-/tmp/mistral-e2e-auth}
HOST=127.0.0.1
KS_PORT=${MISTRAL_E2E_AUTH_KEYSTONE_PORT:-15000}
# A second Keystone process over the same database and fernet keys, whose
# tokens expire after SHORT_EXPIRATION seconds: tokens it issues are valid
# everywhere, so renewal is testable without making every token short.
KS_SHORT_PORT=${MISTRAL_E2E_AUTH_SHORT_KEYSTONE_PORT:-15001}
SHORT_EXPIRATION=${MISTRAL_E2E_AUTH_SHORT_EXPIRATION:-20}
API_PORT=${MISTRAL_E2E_AUTH_API_PORT:-18990}
PG_PORT=${MISTRAL_E2E_PG_PORT:-15432}
RABBIT_PORT=${MISTRAL_E2E_RABBIT_PORT:-15672}
AUTH_PASSWORD=${MISTRAL_E2E_AUTH_PASSWORD:-e2e-auth-secret}
START_TIMEOUT=${MISTRAL_E2E_START_TIMEOUT:-120}
STOP_GRACE=${MISTRAL_E2E_STOP_GRACE:-5}
DB_NAME=mistral_auth

KS_URL=http://$HOST:$KS_PORT/v3
KS_SHORT_URL=http://$HOST:$KS_SHORT_PORT/v3
MISTRAL_URL=http://$HOST:$API_PORT
KS_CONF=$STATE_DIR/keystone.conf
KS_SHORT_CONF=$STATE_DIR/keystone-short.conf
CONF=$STATE_DIR/mistral.conf
MISTRAL_LOG=$STATE_DIR/mistral.log
# Debian's interpreter: another python3 earlier on PATH lacks the packages.
PY=/usr/bin/python3

PACKAGES=(python3-keystone)

log() { printf '[keystone.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
	local desc=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.5
	done
	log "$desc ready"
}

# ---------------------------------------------------------------------------
# process groups: every server runs under setsid, so pid == pgid and stop
# signals exactly the group it started (never a name pattern).

# pgid_of NAME: the live process group recorded in NAME.pid.
pgid_of() {
	local f=$STATE_DIR/$1.pid
	[[ -f $f ]] || return 1
	local pid
	pid=$(cat "$f")
	pgrep -g "$pid" >/dev/null 2>&1 || return 1
	echo "$pid"
}

stop_group() {
	local name=$1 pgid
	if pgid=$(pgid_of "$name"); then
		kill -TERM -- "-$pgid" 2>/dev/null || true
		local deadline=$((SECONDS + STOP_GRACE))
		while pgrep -g "$pgid" >/dev/null 2>&1 && ((SECONDS < deadline)); do
			sleep 0.3
		done
		# mistral-server exits slowly on SIGTERM (it waits on its engine
		# server); its state is in PostgreSQL, so SIGKILL is safe.
		if pgrep -g "$pgid" >/dev/null 2>&1; then
			log "$name still running ${STOP_GRACE}s after SIGTERM; SIGKILL"
			kill -KILL -- "-$pgid" 2>/dev/null || true
		fi
	fi
	rm -f "$STATE_DIR/$name.pid"
}

# ---------------------------------------------------------------------------
# install

installed() {
	local p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
	done
}

cmd_install() {
	if installed; then
		log "packages already installed"
		return
	fi
	local t0=$SECONDS
	if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1) ]]; then
		apt-get update
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}" ||
		die "apt-get install failed"
	log "installed in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------------------
# Keystone

write_ks_conf() {
	local conf=$1 expiration=$2
	cat >"$conf" <<EOF
# Generated by testenv/keystone/keystone.sh: throwaway test instance.
[DEFAULT]
log_file = $STATE_DIR/$(basename "$conf" .conf).log
debug = false

[database]
connection = sqlite:///$STATE_DIR/keystone.db

[token]
provider = fernet
expiration = $expiration

[fernet_tokens]
key_repository = $STATE_DIR/fernet-keys

[fernet_receipts]
key_repository = $STATE_DIR/fernet-keys

[credential]
key_repository = $STATE_DIR/credential-keys

[identity]
# Test-only: token issue 0.34 s -> 0.075 s.
password_hash_rounds = 4
EOF
}

ks_manage() { keystone-manage --config-file "$KS_CONF" "$@" >>"$STATE_DIR/keystone-manage.log" 2>&1; }

init_keystone() {
	[[ -f $STATE_DIR/keystone.done ]] && return
	log "initialising keystone (db_sync, fernet, bootstrap)"
	rm -f "$STATE_DIR/keystone.db"
	mkdir -p "$STATE_DIR/fernet-keys" "$STATE_DIR/credential-keys"
	ks_manage db_sync || die "keystone-manage db_sync failed (see $STATE_DIR/keystone-manage.log)"
	# WAL: without it POST /v3/services and /v3/endpoints fail now and then
	# with 500 "database is locked".
	$PY -c "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL')" "$STATE_DIR/keystone.db"
	ks_manage fernet_setup --keystone-user root --keystone-group root || die "fernet_setup failed"
	ks_manage credential_setup --keystone-user root --keystone-group root || die "credential_setup failed"
	ks_manage bootstrap --bootstrap-password "$AUTH_PASSWORD" \
		--bootstrap-admin-url "$KS_URL/" --bootstrap-internal-url "$KS_URL/" \
		--bootstrap-public-url "$KS_URL/" --bootstrap-region-id RegionOne ||
		die "keystone-manage bootstrap failed"
	touch "$STATE_DIR/keystone.done"
}

# write_serve: what /usr/bin/keystone-wsgi-public does (the public WSGI app
# under the standard library's wsgiref server, one request at a time), with
# a listen backlog of 128 instead of socketserver's 5: with auth on, every
# Mistral request validates its token here, and mistral-tap's per-project
# polls send several at once; with a backlog of 5 connections time out.
write_serve() {
	cat >"$STATE_DIR/keystone-serve.py" <<'EOF'
import sys
import wsgiref.simple_server as wss

from keystone.server.wsgi import initialize_public_application


class Server(wss.WSGIServer):
    request_queue_size = 128


class QuietHandler(wss.WSGIRequestHandler):
    def log_message(self, *args):
        pass


host, port = sys.argv[1], int(sys.argv[2])
sys.argv[1:] = []
wss.make_server(host, port, initialize_public_application(),
                server_class=Server, handler_class=QuietHandler).serve_forever()
EOF
}

ks_up() { curl -fs -o /dev/null --max-time 5 "http://$HOST:$1/v3"; }

start_ks() {
	local name=$1 port=$2 conf=$3
	if pgid_of "$name" >/dev/null && ks_up "$port"; then
		log "$name already answering on :$port"
		return
	fi
	port_open "$port" && die "port $port is taken by something we did not start; run '$0 stop' or free it"
	write_serve
	OS_KEYSTONE_CONFIG_FILES=$conf OS_KEYSTONE_CONFIG_DIR=$STATE_DIR \
		setsid $PY "$STATE_DIR/keystone-serve.py" "$HOST" "$port" \
		>"$STATE_DIR/$name.out" 2>&1 </dev/null &
	echo $! >"$STATE_DIR/$name.pid"
	wait_for "$name :$port" 60 ks_up "$port" || {
		tail -30 "$STATE_DIR/$name.out" >&2
		die "$name did not start"
	}
}

# ---------------------------------------------------------------------------
# Keystone API helpers (curl: one python start per openstack CLI call would
# cost seconds).

# token USER PROJECT [KEYSTONE_URL]: a project-scoped token.
token() {
	local url=${3:-$KS_URL}
	curl -fsS -D - -o /dev/null -H 'Content-Type: application/json' "$url/auth/tokens" -d @- <<EOF | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r'
{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"$1","domain":{"id":"default"},"password":"$AUTH_PASSWORD"}}},
 "scope":{"project":{"name":"$2","domain":{"id":"default"}}}}}
EOF
}

ADMIN_TOKEN=

ks() {
	local method=$1 path=$2
	shift 2
	curl -fsS -X "$method" -H "X-Auth-Token: $ADMIN_TOKEN" -H 'Content-Type: application/json' "$KS_URL$path" "$@"
}

# id_of COLLECTION NAME: the id of a named project, user, role or service.
id_of() {
	ks GET "/$1?name=$2" | jq -r --arg c "$1" '.[$c][0].id // empty'
}

ensure_project() {
	local id
	id=$(id_of projects "$1")
	[[ -n $id ]] || id=$(ks POST /projects -d "{\"project\":{\"name\":\"$1\",\"domain_id\":\"default\"}}" | jq -r .project.id)
	echo "$id"
}

ensure_user() {
	local id
	id=$(id_of users "$1")
	[[ -n $id ]] || id=$(ks POST /users -d "{\"user\":{\"name\":\"$1\",\"domain_id\":\"default\",\"password\":\"$AUTH_PASSWORD\"}}" | jq -r .user.id)
	echo "$id"
}

ensure_role() {
	local id
	id=$(id_of roles "$1")
	[[ -n $id ]] || id=$(ks POST /roles -d "{\"role\":{\"name\":\"$1\"}}" | jq -r .role.id)
	echo "$id"
}

# grant PROJECT_ID USER_ID ROLE_ID (PUT is idempotent).
grant() { ks PUT "/projects/$1/users/$2/roles/$3" >/dev/null; }

setup_identity() {
	[[ -f $STATE_DIR/identity.done ]] && return
	log "creating projects, users, roles and the workflowv2 endpoint"
	ADMIN_TOKEN=$(token admin admin)
	[[ -n $ADMIN_TOKEN ]] || die "cannot get an admin token"
	local member reader admin demo alt service u
	member=$(ensure_role member)
	reader=$(ensure_role reader)
	admin=$(ensure_role admin)
	demo=$(ensure_project demo)
	alt=$(ensure_project alt)
	service=$(ensure_project service)
	u=$(ensure_user demo-user)
	grant "$demo" "$u" "$member"
	u=$(ensure_user alt-user)
	grant "$alt" "$u" "$member"
	# The service user: admin in its own project (all_projects listings of
	# executions), reader inherited by every project of the domain (a
	# project-scoped token per project for tasks and workbooks).
	u=$(ensure_user mistral-tap)
	grant "$service" "$u" "$admin"
	ks PUT "/OS-INHERIT/domains/default/users/$u/roles/$reader/inherited_to_projects" >/dev/null
	# The catalog entry, so the mistral CLI works with OS_* variables.
	local svc
	svc=$(ks GET "/services?type=workflowv2" | jq -r '.services[0].id // empty')
	if [[ -z $svc ]]; then
		svc=$(ks POST /services -d '{"service":{"name":"mistral","type":"workflowv2"}}' | jq -r .service.id)
		local iface
		for iface in public internal admin; do
			ks POST /endpoints -d "{\"endpoint\":{\"service_id\":\"$svc\",\"interface\":\"$iface\",\"region_id\":\"RegionOne\",\"url\":\"$MISTRAL_URL/v2\"}}" >/dev/null
		done
	fi
	touch "$STATE_DIR/identity.done"
}

# ---------------------------------------------------------------------------
# the auth-on Mistral

pg_q() { runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "$1"; }

write_mistral_conf() {
	cat >"$CONF" <<EOF
# Generated by testenv/keystone/keystone.sh: throwaway auth-on instance.
[DEFAULT]
transport_url = rabbit://guest:guest@127.0.0.1:$RABBIT_PORT/
# Own exchange and topics: the auth-off Mistral on the same broker must
# never pick up this one's RPC calls.
control_exchange = mistral_auth
log_file = $MISTRAL_LOG
debug = false

[api]
host = $HOST
port = $API_PORT
api_workers = 1

[database]
connection = postgresql://postgres@127.0.0.1:$PG_PORT/$DB_NAME

[engine]
topic = mistral_auth_engine

[executor]
topic = mistral_auth_executor

[event_engine]
topic = mistral_auth_event_engine

[notifier]
type = local
topic = mistral_auth_notifier

[pecan]
auth_enable = true

[keystone_authtoken]
www_authenticate_uri = $KS_URL
auth_url = $KS_URL
auth_type = password
username = admin
password = $AUTH_PASSWORD
project_name = admin
user_domain_name = Default
project_domain_name = Default
# Tests revoke tokens and expect the revocation to bite at once; in
# production the 300 s default is right.
token_cache_time = -1

[oslo_policy]
policy_file = /etc/mistral/policy.json
EOF
}

migrate_db() {
	[[ -f $STATE_DIR/db.done ]] && return
	if [[ $(pg_q "select 1 from pg_database where datname='$DB_NAME'") != 1 ]]; then
		pg_q "create database $DB_NAME" >/dev/null
	fi
	log "creating the schema of $DB_NAME (upgrade head + populate)"
	mistral-db-manage --config-file "$CONF" upgrade head >"$STATE_DIR/db-manage.log" 2>&1 ||
		{ tail -30 "$STATE_DIR/db-manage.log" >&2; die "upgrade head failed"; }
	mistral-db-manage --config-file "$CONF" populate >>"$STATE_DIR/db-manage.log" 2>&1 ||
		{ tail -30 "$STATE_DIR/db-manage.log" >&2; die "populate failed"; }
	touch "$STATE_DIR/db.done"
}

# api_up: the auth-on API answers 401 without a token, which proves both
# that it runs and that auth is on.
api_up() {
	[[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$MISTRAL_URL/v2/workflows") == 401 ]]
}

start_mistral() {
	if pgid_of mistral >/dev/null && api_up; then
		log "auth-on mistral already answering on $MISTRAL_URL"
		return
	fi
	port_open "$API_PORT" && die "port $API_PORT is taken by something we did not start; run '$0 stop' or free it"
	: >"$MISTRAL_LOG"
	setsid mistral-server --config-file "$CONF" --server all >"$STATE_DIR/mistral-server.out" 2>&1 </dev/null &
	echo $! >"$STATE_DIR/mistral.pid"
	wait_for "auth-on mistral api" "$START_TIMEOUT" api_up || {
		tail -40 "$STATE_DIR/mistral-server.out" >&2 || true
		tail -60 "$MISTRAL_LOG" >&2 || true
		die "auth-on mistral did not start"
	}
	# The API answers before the engine consumes its topic; one
	# authenticated request proves keystone_authtoken works end to end.
	local tok
	tok=$(token demo-user demo)
	curl -fsS -o /dev/null -H "X-Auth-Token: $tok" "$MISTRAL_URL/v2/workflows" ||
		die "auth-on mistral rejects a valid demo token"
}

# ---------------------------------------------------------------------------
# commands

cmd_start() {
	command -v keystone-manage >/dev/null || die "keystone not installed: run '$0 install' first"
	command -v mistral-server >/dev/null || die "mistral-server not installed: run testenv/realmistral/mistral.sh install"
	port_open "$PG_PORT" || die "no PostgreSQL on :$PG_PORT: run testenv/realmistral/mistral.sh start first"
	port_open "$RABBIT_PORT" || die "no RabbitMQ on :$RABBIT_PORT: run testenv/realmistral/mistral.sh start first"
	local t0=$SECONDS
	mkdir -p "$STATE_DIR"
	chmod 700 "$STATE_DIR"
	write_ks_conf "$KS_CONF" 3600
	write_ks_conf "$KS_SHORT_CONF" "$SHORT_EXPIRATION"
	init_keystone
	start_ks keystone "$KS_PORT" "$KS_CONF"
	start_ks keystone-short "$KS_SHORT_PORT" "$KS_SHORT_CONF"
	setup_identity
	write_mistral_conf
	migrate_db
	start_mistral
	log "started in $((SECONDS - t0)) s"
	echo "MISTRAL_E2E_AUTH_URL=$MISTRAL_URL"
}

cmd_stop() {
	local t0=$SECONDS
	stop_group mistral
	stop_group keystone-short
	stop_group keystone
	local p busy=
	for p in "$API_PORT" "$KS_PORT" "$KS_SHORT_PORT"; do
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
	if ks_up "$KS_PORT"; then echo "keystone        up   $KS_URL"; else
		echo "keystone        down"
		rc=1
	fi
	if ks_up "$KS_SHORT_PORT"; then echo "keystone-short  up   $KS_SHORT_URL (tokens live ${SHORT_EXPIRATION}s)"; else
		echo "keystone-short  down"
		rc=1
	fi
	if api_up; then echo "mistral (auth)  up   $MISTRAL_URL"; else
		echo "mistral (auth)  down"
		rc=1
	fi
	return $rc
}

cmd_env() {
	cat <<EOF
export MISTRAL_E2E_AUTH_URL=$MISTRAL_URL
export MISTRAL_E2E_AUTH_KEYSTONE_URL=$KS_URL
export MISTRAL_E2E_AUTH_SHORT_KEYSTONE_URL=$KS_SHORT_URL
export MISTRAL_E2E_AUTH_SHORT_EXPIRATION=$SHORT_EXPIRATION
export MISTRAL_E2E_AUTH_PASSWORD=$AUTH_PASSWORD
export MISTRAL_E2E_AUTH_SERVICE_USER=mistral-tap
export MISTRAL_E2E_AUTH_SERVICE_PROJECT=service
export MISTRAL_E2E_AUTH_PROJECTS=admin:admin,demo:demo-user,alt:alt-user
export MISTRAL_E2E_AUTH_DIR=$STATE_DIR
export MISTRAL_E2E_AUTH_LOG=$MISTRAL_LOG
EOF
}

cmd_logs() {
	local f
	for f in "$STATE_DIR/mistral-server.out" "$MISTRAL_LOG" "$STATE_DIR/keystone.out" "$STATE_DIR/keystone.log" "$STATE_DIR/keystone-short.out"; do
		[[ -f $f ]] || continue
		echo "==> $f <=="
		tail -"${LINES_TAIL:-40}" "$f"
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
