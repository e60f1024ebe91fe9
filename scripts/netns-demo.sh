#!/usr/bin/env bash
# Three data centres on one machine: network namespaces stand in for regions us, eu and
# ap, each with NODES sidecars (`meshlimit start`) on a bridge of its own, joined by a
# routed "WAN" namespace. The sidecars share one global per-user limit; the script
# sends traffic, cuts eu off the WAN, sends more, heals, and shows what every node saw.
# Needs Linux, root, iproute2, curl, jq, and `npm run build` done. Usage:
#   sudo scripts/netns-demo.sh            (NODES=2 per region by default; KEEP=1 keeps logs)
# Every namespace is named mldemo<pid>-*, and all of them are deleted on exit, Ctrl-C
# or failure (leftovers of a killed run are deleted by the next one).
set -euo pipefail

NODES=${NODES:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLI="$ROOT/dist/src/cli/index.js"
P="mldemo$$-"
REGIONS=(us eu ap)
DIR=$(mktemp -d /tmp/meshlimit-netns-demo.XXXXXX)
PIDS=()
declare -A PID_OF
TOKEN=demo-admin-token-$$-$RANDOM

say () { printf '[%5.1f s] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
T0=$(date +%s.%N)

cleanup () {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P" || true); do ip netns del "$ns" || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "logs kept in $DIR"; else rm -rf "$DIR"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "netns-demo: needs root (network namespaces)" >&2; exit 2; }
for tool in ip curl jq bc node; do command -v $tool >/dev/null || { echo "netns-demo: needs $tool" >&2; exit 2; }; done
[ -f "$CLI" ] || { echo "netns-demo: run npm run build first ($CLI is missing)" >&2; exit 2; }

# Namespaces of earlier runs whose script is gone (killed before its cleanup).
for ns in $(ip netns list | awk '{print $1}' | grep '^mldemo[0-9]*-' || true); do
  pid=${ns#mldemo}; pid=${pid%%-*}
  kill -0 "$pid" 2>/dev/null || ip netns del "$ns" || true
done

# --- the network -------------------------------------------------------------------
# ${P}wan routes between regions (10.89.R.0/30 links); ${P}<region> bridges its nodes
# (10.88.R+1.0/24, gateway .254); ${P}<region>-<k> is one host, 10.88.R+1.k.
ip netns add "${P}wan"
ip -n "${P}wan" link set lo up
ip netns exec "${P}wan" sysctl -qw net.ipv4.ip_forward=1
for r in "${!REGIONS[@]}"; do
  reg=${REGIONS[$r]}; ns="${P}$reg"; net="10.88.$((r + 1))"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
  ip -n "${P}wan" link add "to-$reg" type veth peer name wan netns "$ns"
  ip -n "${P}wan" addr add "10.89.$r.1/30" dev "to-$reg"
  ip -n "${P}wan" link set "to-$reg" up
  ip -n "${P}wan" route add "$net.0/24" via "10.89.$r.2"
  ip -n "$ns" addr add "10.89.$r.2/30" dev wan
  ip -n "$ns" link set wan up
  ip -n "$ns" route add default via "10.89.$r.1"
  ip -n "$ns" link add br0 type bridge
  ip -n "$ns" addr add "$net.254/24" dev br0
  ip -n "$ns" link set br0 up
  for k in $(seq 1 "$NODES"); do
    host="${P}$reg-$k"
    ip netns add "$host"
    ip -n "$host" link set lo up
    ip -n "$ns" link add "n$k" type veth peer name eth0 netns "$host"
    ip -n "$ns" link set "n$k" master br0
    ip -n "$ns" link set "n$k" up
    ip -n "$host" addr add "$net.$k/24" dev eth0
    ip -n "$host" link set eth0 up
    ip -n "$host" route add default via "$net.254"
  done
done
say "network: namespace ${P}wan routes between ${REGIONS[*]}; $NODES hosts per region (10.88.1-3.x)"

# --- the mesh ------------------------------------------------------------------------
node "$CLI" psk "$DIR/mesh.key" >/dev/null
cat > "$DIR/policies.yaml" <<'EOF'
policies:
  - id: per-user
    key: user
    scope: global
    onPartition: share
    limits: [ { limit: 60, window: 60s } ]
EOF

ALL=()
for reg in "${REGIONS[@]}"; do for k in $(seq 1 "$NODES"); do ALL+=("$reg-$k"); done; done

start_node () { # name, bootstrap list
  local name=$1 boot=$2 reg=${1%-*}
  local args=(start --mesh demo --region "$reg" --policies "$DIR/policies.yaml"
    --host 0.0.0.0 --port 8080 --no-grpc --admin-host 127.0.0.1 --admin-port 8082 --admin-token "$TOKEN"
    --listen /ip4/0.0.0.0/tcp/4001 --psk "$DIR/mesh.key" --identity "$DIR/$name.id" --log-level warn)
  [ -n "$boot" ] && args+=(--bootstrap "$boot")
  ip netns exec "${P}$name" node "$CLI" "${args[@]}" >"$DIR/$name.out" 2>"$DIR/$name.log" &
  PIDS+=($!)
  PID_OF[$name]=$!
}

wait_ready () { # name -> prints its /ip4/<address>/tcp/4001/p2p/<id> multiaddr
  local name=$1
  for _ in $(seq 1 300); do
    if grep -q '"event":"ready"' "$DIR/$name.out" 2>/dev/null; then
      grep '"event":"ready"' "$DIR/$name.out" | jq -r '.multiaddrs[]' | grep '/ip4/10\.88\.' | head -1
      return 0
    fi
    kill -0 "${PID_OF[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "netns-demo: $name did not start; its log:" >&2
  cat "$DIR/$name.log" >&2
  return 1
}

# The first node of each region is a seed; every node bootstraps from every seed.
SEEDS=""
for reg in "${REGIONS[@]}"; do
  start_node "$reg-1" "$SEEDS"
  addr=$(wait_ready "$reg-1")
  SEEDS=${SEEDS:+$SEEDS,}$addr
  say "seed $reg-1 up: $addr"
done
for name in "${ALL[@]}"; do [ "${name##*-}" = 1 ] || start_node "$name" "$SEEDS"; done
for name in "${ALL[@]}"; do [ "${name##*-}" = 1 ] || wait_ready "$name" >/dev/null; done
say "${#ALL[@]} sidecars up (decision API :8080 in each host namespace, libp2p :4001)"

status () { ip netns exec "${P}$1" curl -sf -H "authorization: Bearer $TOKEN" http://127.0.0.1:8082/admin/v1/status; }
alive_of () { status "$1" | jq '[.members[] | select(.state == "alive")] | length'; }
members_line () {
  local line=""
  for name in "${ALL[@]}"; do line+="$name:$(alive_of "$name") "; done
  echo "$line"
}
wait_members () { # predicate on "name alive-count", description, timeout s
  local pred=$1 what=$2 limit=$3 from; from=$(date +%s.%N)
  for _ in $(seq 1 $((limit * 5))); do
    local ok=1
    for name in "${ALL[@]}"; do $pred "$name" "$(alive_of "$name")" || { ok=0; break; }; done
    if [ $ok = 1 ]; then say "$what after $(echo "$(date +%s.%N) - $from" | bc | xargs printf '%.1f') s (members alive per node: $(members_line))"; return 0; fi
    sleep 0.2
  done
  say "$what: not within $limit s (members alive per node: $(members_line))"
  return 1
}
everyone () { [ "$2" = $((${#ALL[@]} - 1)) ]; }
eu_cut () { if [ "${1%-*}" = eu ]; then [ "$2" = $((NODES - 1)) ]; else [ "$2" = $((${#ALL[@]} - 1 - NODES)) ]; fi; }

check () { # name user -> "allowed remaining"
  ip netns exec "${P}$1" curl -sf -X POST http://127.0.0.1:8080/v1/check -d "{\"descriptor\":{\"user\":\"$2\"}}" \
    | jq -r '"\(.allowed) \(.decision.remaining)"'
}
burst () { # n user -> per node allowed counts, and the total
  local n=$1 user=$2 total=0 line=""
  for name in "${ALL[@]}"; do
    local ok=0
    for _ in $(seq 1 "$n"); do [ "$(check "$name" "$user" | cut -d' ' -f1)" = true ] && ok=$((ok + 1)); done
    line+="$name:$ok "; total=$((total + ok))
  done
  echo "$line(total $total)"
}
views () { # one check per node: what each believes is left
  local line=""
  for name in "${ALL[@]}"; do line+="$name:$(check "$name" "$1" | awk '{print ($1 == "true" ? "allowed" : "denied") "/" $2}') "; done
  echo "$line"
}

wait_members everyone "every node hears every other" 30
say "policy per-user: 60 requests per 60 s per user, scope global, onPartition share"
b1=$(burst 5 alice); say "alice, 5 requests on each node: allowed $b1"
sleep 1
v1=$(views alice); say "one more on each node (allowed/remaining): $v1"

# --- the partition -------------------------------------------------------------------
ip -n "${P}wan" rule add to 10.88.2.0/24 blackhole
ip -n "${P}wan" rule add from 10.88.2.0/24 blackhole
say "PARTITION: the WAN drops everything to and from eu (ip rule ... blackhole in ${P}wan)"
wait_members eu_cut "membership sees the cut (eu hears only eu)" 30
b2=$(burst 20 alice); say "alice, 20 requests on each node during the cut: allowed $b2"

ip -n "${P}wan" rule del to 10.88.2.0/24 blackhole
ip -n "${P}wan" rule del from 10.88.2.0/24 blackhole
say "HEAL: rules removed"
wait_members everyone "every node hears every other again" 60
# Denied checks count nothing, so these probes do not move the totals once alice is out.
v2=$(views alice); say "one more on each node right after the heal (allowed/remaining): $v2"
sleep 5
v3=$(views alice); say "and 5 s later, once every region's full aggregate arrived: $v3"
total=$(( $(echo "$b1" | sed 's/.*(total \([0-9]*\))/\1/') + $(echo "$b2" | sed 's/.*(total \([0-9]*\))/\1/') \
  + $(echo "$v1 $v2 $v3" | grep -o 'allowed/' | wc -l) ))
say "alice was admitted $total times in all (limit 60 per 60 s, across the three regions)"
