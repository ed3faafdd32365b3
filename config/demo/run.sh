#!/usr/bin/env bash
# A live demo of tunneld on this machine, touching nothing outside its own temporary folder:
# a private OpenSSH server on a loopback port with freshly generated keys, a small web
# server standing for "a service on the client machine", and tunneld keeping a local (-L),
# a remote (-R) and a dynamic (-D, SOCKS) forward to that server. One request goes through
# each forward; then tunneld is stopped with SIGTERM.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- what the demo needs -------------------------------------------------------------
need=()
[[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing ${need[*]}"
    guard=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then  # do not start the system sshd on port 22
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
      guard=/usr/sbin/policy-rc.d
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    [[ -n $guard ]] && rm -f "$guard"
  else
    echo "the demo needs: ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

say "building tunneld"
(cd "$repo" && cargo build --release -q -p tunneld)
tunneld="$repo/target/release/tunneld"

demo=$(mktemp -d /tmp/tunneld-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$demo"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "timed out waiting for $what" >&2; return 1; fi
    sleep 0.1
  done
}

# --- the server: a private sshd on loopback ------------------------------------------
say "starting a private OpenSSH server in $demo"
ssh-keygen -q -t ed25519 -N "" -f "$demo/host_key"
ssh-keygen -q -t ed25519 -N "" -f "$demo/id_ed25519" -C tunneld-demo
cp "$demo/id_ed25519.pub" "$demo/authorized_keys"
ssh_port=$(free_port)
[[ $(id -u) == 0 ]] && mkdir -p /run/sshd
cat >"$demo/sshd_config" <<CONF
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $demo/host_key
AuthorizedKeysFile $demo/authorized_keys
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
GatewayPorts no
LogLevel DEBUG1
CONF
/usr/sbin/sshd -D -e -f "$demo/sshd_config" 2>"$demo/sshd.log" &
pids+=($!)
wait_for 10 "sshd" bash -c "exec 3<>/dev/tcp/127.0.0.1/$ssh_port && head -c 7 <&3 | grep -q SSH-2.0"
echo "[127.0.0.1]:$ssh_port $(cut -d' ' -f1,2 "$demo/host_key.pub")" >"$demo/known_hosts"

# --- a service on "the client machine" -----------------------------------------------
mkdir -p "$demo/www"
echo "hello from a web server on the tunneld side" >"$demo/www/index.html"
web_port=$(free_port)
python3 -m http.server "$web_port" --bind 127.0.0.1 --directory "$demo/www" >/dev/null 2>&1 &
pids+=($!)
wait_for 10 "web server" curl -sf "http://127.0.0.1:$web_port/"

# --- tunneld -------------------------------------------------------------------------
local_port=$(free_port); remote_port=$(free_port); socks_port=$(free_port)
cat >"$demo/tunneld.toml" <<CONF
[daemon]
socket = "$demo/tunneld.sock"

[tunnels.demo]
host = "127.0.0.1"
port = $ssh_port
user = "$(id -un)"
identity_file = "$demo/id_ed25519"
known_hosts = "$demo/known_hosts"
local = ["$local_port:127.0.0.1:$web_port"]     # ssh -L: a port here to a service the server reaches
remote = ["$remote_port:127.0.0.1:$web_port"]   # ssh -R: publish our web server on the server
dynamic = ["$socks_port"]                       # ssh -D: SOCKS proxy exiting at the server
CONF
say "tunneld check"
"$tunneld" check -c "$demo/tunneld.toml"
say "tunneld run (log: $demo/tunneld.log)"
"$tunneld" run -c "$demo/tunneld.toml" 2>"$demo/tunneld.log" &
tunneld_pid=$!
pids+=($tunneld_pid)
wait_for 20 "the tunnel to come up" grep -q "remote forward active" "$demo/tunneld.log"
sed 's/^/    /' "$demo/tunneld.log"

say "local forward:   curl http://127.0.0.1:$local_port/"
curl -sS --max-time 10 "http://127.0.0.1:$local_port/"
say "remote forward:  curl http://127.0.0.1:$remote_port/   (a port the SSH server listens on)"
curl -sS --max-time 10 "http://127.0.0.1:$remote_port/"
say "dynamic forward: curl -x socks5h://127.0.0.1:$socks_port http://localhost:$web_port/"
curl -sS --max-time 10 -x "socks5h://127.0.0.1:$socks_port" "http://localhost:$web_port/"
say "the server saw these channels:"
grep -E "Accepted publickey|server_input_global_request: rtype tcpip-forward|server_request_direct_tcpip" "$demo/sshd.log" | sed 's/^/    /' || true

say "tunneld status"
"$tunneld" status -c "$demo/tunneld.toml"

say "stopping tunneld with SIGTERM"
kill -TERM "$tunneld_pid"
status=0; wait "$tunneld_pid" || status=$?
echo "tunneld exited with status $status"
exit "$status"
