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
