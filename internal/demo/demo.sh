#!/usr/bin/env bash
# postern demo: the whole flow on this machine, on embedded defaults.
#
# Starts the test IdP, the signer, the bastion and two stock sshd nodes
# (in their own network namespaces when run as root, else as processes of
# the current user on 127.0.0.2 and 127.0.0.3), checks the flow once by
# itself, then prints the commands to type and waits for Ctrl-C.
#
#   DEMO_DIR   state directory (default ./.demo)
#   BIN        directory with the built binaries (default ./bin)
#   DEMO_WAIT  0: exit after the self-check instead of waiting (used by tests)
#   SIGNER_PORT, IDP_PORT, BASTION_PORT   loopback ports (3080, 5556, 2222)
#
# "demo.sh stop" stops a demo left running and removes its namespaces.
set -euo pipefail

DEMO_DIR=${DEMO_DIR:-$PWD/.demo}
BIN=${BIN:-$PWD/bin}
DEMO_WAIT=${DEMO_WAIT:-1}
SIGNER_PORT=${SIGNER_PORT:-3080}
IDP_PORT=${IDP_PORT:-5556}
BASTION_PORT=${BASTION_PORT:-2222}
NS_PREFIX=${DEMO_NS_PREFIX:-postern-demo}
VETH=${DEMO_VETH:-pd}   # veth names $VETH-h1, $VETH-n1 (15 characters at most)
NET=${DEMO_NET:-10.214} # node i lives in $NET.i.0/30
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
ME=$(id -un)

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; [ -d "$DEMO_DIR/logs" ] && printf 'demo: hint: logs are in %s/logs\n' "$DEMO_DIR" >&2; exit 1; }

stop_demo() {
	if [ -f "$DEMO_DIR/pids" ]; then
		while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$DEMO_DIR/pids"
		sleep 0.3
		while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$DEMO_DIR/pids"
		rm -f "$DEMO_DIR/pids"
	fi
	if [ "$(id -u)" = 0 ]; then
		for i in 1 2; do
			ip link del "$VETH-h$i" 2>/dev/null || true
			ip netns del "$NS_PREFIX-node$i" 2>/dev/null || true
		done
	fi
}

if [ "${1:-}" = stop ]; then
	stop_demo
	say "stopped"
	exit 0
fi

for b in postern-signer postern postern-bastion postern-testidp; do
	[ -x "$BIN/$b" ] || die "$BIN/$b is missing; run make build (make demo does)"
done
[ -x "$SSHD" ] || die "sshd not found; run make prereqs"

stop_demo
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"/{logs,signer,bastion,check}
chmod 700 "$DEMO_DIR"
trap 'stop_demo' EXIT
trap 'echo; say "stopping"; exit 0' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$SIGNER_PORT" "$IDP_PORT" "$BASTION_PORT"; do
	port_free "$p" || die "port $p on 127.0.0.1 is in use (another demo? run make demo-stop)"
done

bg() { # bg NAME CMD...: run in the background, log to logs/NAME.log
	local name=$1
	shift
	"$@" >"$DEMO_DIR/logs/$name.log" 2>&1 &
	echo $! >>"$DEMO_DIR/pids"
}

wait_port() { # wait_port HOST PORT NAME
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
		sleep 0.1
	done
	die "$3 did not start listening on $1:$2 (see $DEMO_DIR/logs/$3.log)"
}

# --- CA, IdP client secret, signer config --------------------------------
"$BIN/postern-signer" init --dir "$DEMO_DIR/signer" >/dev/null
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$DEMO_DIR/signer/oidc-secret"
chmod 600 "$DEMO_DIR/signer/oidc-secret"
SIGNER_URL="https://127.0.0.1:$SIGNER_PORT"

# --- nodes ---------------------------------------------------------------
declare -a NODE_ADDR NODE_PORT
if [ "$(id -u)" = 0 ]; then
	MODE="network namespaces"
	mkdir -p /run/sshd
	for i in 1 2; do
		ns=$NS_PREFIX-node$i
		ip netns add "$ns"
		ip link add "$VETH-h$i" type veth peer name "$VETH-n$i"
		ip link set "$VETH-n$i" netns "$ns"
		ip addr add "$NET.$i.1/30" dev "$VETH-h$i"
		ip link set "$VETH-h$i" up
		ip -n "$ns" addr add "$NET.$i.2/30" dev "$VETH-n$i"
		ip -n "$ns" link set "$VETH-n$i" up
		ip -n "$ns" link set lo up
		NODE_ADDR[$i]=$NET.$i.2
		NODE_PORT[$i]=22
	done
else
	MODE="loopback processes (not root)"
	for i in 1 2; do
		NODE_ADDR[$i]=127.0.0.$((i + 1))
		NODE_PORT[$i]=2022
	done
fi

for i in 1 2; do
	d=$DEMO_DIR/node$i
	mkdir -p "$d"
	ssh-keygen -q -t ed25519 -N '' -C "node$i" -f "$d/ssh_host_ed25519_key"
	cp "$DEMO_DIR/signer/user_ca.pub" "$d/user_ca.pub"
done

# --- the one configuration file -------------------------------------------
rule() { # node rule for node i: names in namespaces, explicit loopback addresses otherwise
	if [ "$(id -u)" = 0 ]; then echo "\"node$1\""; else echo "\"${NODE_ADDR[$1]}:${NODE_PORT[$1]}\""; fi
}
CFG=$DEMO_DIR/postern.toml
cat >"$CFG" <<EOF
# Written by the demo (internal/demo/demo.sh). Every key: docs/config.md.
[signer]
listen = "127.0.0.1:$SIGNER_PORT"
data_dir = "$DEMO_DIR/signer"
host_patterns = ["node1", "node2", "127.0.0.1", "postern-bastion", "$NET.0.0/16", "127.0.0.0/8"]

[signer.oidc]
issuer = "http://127.0.0.1:$IDP_PORT"
client_id = "postern"
client_secret_file = "$DEMO_DIR/signer/oidc-secret"

[storage]
local_dir = "$DEMO_DIR/recordings"   # no S3 bucket in the demo: recordings stay here

[bastion]
listen = "127.0.0.1:$BASTION_PORT"
data_dir = "$DEMO_DIR/bastion"
user_ca = "$DEMO_DIR/signer/user_ca.pub"
jump_hosts = ["node1", "node2"]
shutdown_grace = "2s"

[[bastion.node]]
name = "node1"
addr = "${NODE_ADDR[1]}"
labels = { env = "demo" }

[[bastion.node]]
name = "node2"
addr = "${NODE_ADDR[2]}"
labels = { env = "demo" }

# alice is in "infra" and "dev": both nodes. bob is in "dev": node2 only.
# carol is in no group: no certificate.
[[role]]
name = "infra"
groups = ["infra"]
logins = ["$ME"]
nodes = [$(rule 1), $(rule 2)]
max_ttl = "8h"
extensions = ["permit-pty", "permit-port-forwarding"]

[[role]]
name = "dev"
groups = ["dev"]
logins = ["$ME"]
nodes = [$(rule 2)]
max_ttl = "2h"
extensions = ["permit-pty"]
EOF
"$BIN/postern-bastion" check-config --config "$CFG" >/dev/null || die "the generated config is invalid"

# --- host certificates ----------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -C postern-bastion -f "$DEMO_DIR/bastion/host_key"
"$BIN/postern-signer" host-cert --config "$CFG" --host "postern-bastion,127.0.0.1" --pubkey "$DEMO_DIR/bastion/host_key.pub" >/dev/null
for i in 1 2; do
	d=$DEMO_DIR/node$i
	"$BIN/postern-signer" host-cert --config "$CFG" --host "node$i,${NODE_ADDR[$i]}" --pubkey "$d/ssh_host_ed25519_key.pub" >/dev/null
	cat >"$d/sshd_config" <<EOF
ListenAddress ${NODE_ADDR[$i]}
Port ${NODE_PORT[$i]}
HostKey $d/ssh_host_ed25519_key
HostCertificate $d/ssh_host_ed25519_key-cert.pub
TrustedUserCAKeys $d/user_ca.pub
AuthorizedKeysFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
PidFile none
Subsystem sftp internal-sftp
LogLevel VERBOSE
EOF
	if [ "$(id -u)" = 0 ]; then
		bg "node$i" ip netns exec "$NS_PREFIX-node$i" unshare --uts sh -c "hostname node$i && exec $SSHD -D -e -f $d/sshd_config"
	else
		bg "node$i" "$SSHD" -D -e -f "$d/sshd_config"
	fi
done

# --- IdP, signer, bastion ---------------------------------------------------
bg postern-testidp "$BIN/postern-testidp" --addr "127.0.0.1:$IDP_PORT" \
	--client-secret-file "$DEMO_DIR/signer/oidc-secret" --redirect-uri "$SIGNER_URL/v1/login/callback"
wait_port 127.0.0.1 "$IDP_PORT" postern-testidp
bg postern-signer "$BIN/postern-signer" --config "$CFG"
wait_port 127.0.0.1 "$SIGNER_PORT" postern-signer
bg postern-bastion "$BIN/postern-bastion" --config "$CFG"
wait_port 127.0.0.1 "$BASTION_PORT" postern-bastion
if [ "$(id -u)" = 0 ]; then
	for i in 1 2; do
		for _ in $(seq 1 50); do
			ip netns exec "$NS_PREFIX-node$i" bash -c "(exec 3<>/dev/tcp/${NODE_ADDR[$i]}/22)" 2>/dev/null && break
			sleep 0.1
		done
	done
else
	for i in 1 2; do wait_port "${NODE_ADDR[$i]}" "${NODE_PORT[$i]}" "node$i"; done
fi

# --- self-check: the flow a newcomer types, run once by the script ------------
CHECK=$DEMO_DIR/check
eval "$(ssh-agent -s -a "$CHECK/agent.sock")" >/dev/null
echo "$SSH_AGENT_PID" >>"$DEMO_DIR/pids"
export POSTERN_HOME=$CHECK/home
"$BIN/postern" login --device --signer "$SIGNER_URL" --signer-ca "$DEMO_DIR/signer/tls.crt" >"$CHECK/login.out" 2>&1 &
login_pid=$!
for _ in $(seq 1 100); do grep -q '^    ' "$CHECK/login.out" 2>/dev/null && break; sleep 0.1; done
uri=$(sed -n 's/^To sign in, open \(.*\) and enter the code:$/\1/p' "$CHECK/login.out")
code=$(sed -n 's/^    \(.*\)$/\1/p' "$CHECK/login.out" | head -1)
[ -n "$uri" ] && [ -n "$code" ] || die "self-check: postern login printed no device code: $(cat "$CHECK/login.out")"
"$BIN/postern-testidp" approve --user alice --password alice "$uri" "$code" >/dev/null || die "self-check: could not approve the device login"
wait "$login_pid" || die "self-check: postern login failed: $(cat "$CHECK/login.out")"
"$BIN/postern" config --install "$CHECK/ssh_config" >/dev/null
portopt=""
[ "${NODE_PORT[1]}" = 22 ] || portopt="-p ${NODE_PORT[1]}"
got=$(ssh -F "$CHECK/ssh_config" -o BatchMode=yes -J postern-bastion $portopt node1 hostname 2>"$CHECK/ssh.err") ||
	die "self-check: ssh -J postern-bastion node1 failed: $(cat "$CHECK/ssh.err")"
kill "$SSH_AGENT_PID" 2>/dev/null || true
unset POSTERN_HOME SSH_AGENT_PID
say "self-check passed: alice logged in, ssh -J postern-bastion node1 hostname printed '$got'"

if [ "$DEMO_WAIT" = 0 ]; then
	exit 0
fi

REL=$(realpath --relative-to="$PWD" "$DEMO_DIR" 2>/dev/null || echo "$DEMO_DIR")
B=$(realpath --relative-to="$PWD" "$BIN" 2>/dev/null || echo "$BIN")
cat <<EOF

postern demo is running ($MODE). Users: alice/alice (infra, dev), bob/bob (dev), carol/carol (none).

  0. an agent for this shell, if you have none:  eval "\$(ssh-agent)"
  1. $B/postern login --signer $SIGNER_URL --signer-ca $REL/signer/tls.crt --device
       (open the printed URL in a browser and sign in as alice/alice, or approve from another shell:
        $B/postern-testidp approve --user alice URL CODE)
  2. $B/postern config --install $REL/ssh_config
  3. ssh -F $REL/ssh_config -J postern-bastion $portopt node1 hostname

Also try: ssh -F $REL/ssh_config postern-bastion whoami   |   ... nodes
Audit: $REL/signer/audit.log, $REL/bastion/audit.log    Recordings: $REL/recordings/
Logs: $REL/logs/
Ctrl-C (or make demo-stop) stops everything.
EOF
while true; do sleep 3600 & wait $!; done
