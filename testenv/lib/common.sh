# common.sh: helpers shared by testenv/realmistral/mistral.sh and
# testenv/keystone/keystone.sh. Source it after setting SCRIPT_NAME (the log
# prefix) and PACKAGES (what `installed` checks).

log() { printf '[%s %s] %s\n' "$SCRIPT_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# port_open PORT: true when something listens on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for DESC SECONDS CMD...: poll CMD every 0.5 s until it succeeds.
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

# installed: true when every package in PACKAGES is installed.
installed() {
	local p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
	done
}

# group_of PIDFILE: the live process group recorded in PIDFILE. The servers
# are started with setsid, so the recorded pid is their group's id; any
# member of the group still alive counts.
group_of() {
	[[ -f $1 ]] || return 1
	local pid
	pid=$(cat "$1")
	pgrep -g "$pid" >/dev/null 2>&1 || return 1
	echo "$pid"
}

# stop_group NAME PIDFILE: SIGTERM the group recorded in PIDFILE, SIGKILL
# it after STOP_GRACE seconds, remove PIDFILE. mistral-server exits slowly
# or never on SIGTERM (its parent waits on its engine server, and ignores
# SIGTERM without a broker); every server's state is in PostgreSQL or
# files, so SIGKILL after the grace is safe.
stop_group() {
	local name=$1 pidfile=$2 pgid
	if pgid=$(group_of "$pidfile"); then
		kill -TERM -- "-$pgid" 2>/dev/null || true
		local deadline=$((SECONDS + STOP_GRACE))
		while pgrep -g "$pgid" >/dev/null 2>&1 && ((SECONDS < deadline)); do
			sleep 0.3
		done
		if pgrep -g "$pgid" >/dev/null 2>&1; then
			log "$name still running ${STOP_GRACE}s after SIGTERM; SIGKILL"
			kill -KILL -- "-$pgid" 2>/dev/null || true
		fi
	fi
	rm -f "$pidfile"
}
