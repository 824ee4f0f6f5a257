#!/usr/bin/env bash
# A three-manager Docker Swarm on one machine: kvm2, kvm4, kvm8 in network namespaces.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/netns-swarm.sh up|down|status|env

A three-manager Docker Swarm on this one machine, named like the reference
cluster (kvm2, kvm4, kvm8; kvm8 carries the edge label), for tests only.

  up      create the namespaces and the bridge, start one dockerd per node,
          form the swarm, label kvm8 edge=true, load the local test images
          (safe to run again: it brings up whatever is missing)
  down    stop the daemons, remove their state, the namespaces and the bridge
          (safe to run again; also cleans what a crashed run left)
  status  one line per node; exits 1 unless all three are up and in the swarm
  env     print NODE=SOCKET lines for the tests (kvm2=unix:///run/...)

Network: the project's own test range 198.18.13.0/24 (RFC 2544 benchmark
space, never routed, clear of Docker's 172.17/16 and 10.0.0.0/8 pools and of
the cluster's WireGuard 10.100.0.0/24), with no route out of it. Bridge swarmhook0 = 198.18.13.1,
kvm2 = .2, kvm4 = .4, kvm8 = .8. Each node runs dockerd with its own
--data-root /var/lib/swarmhook-netns/NODE, --exec-root and socket
/run/swarmhook-netns/NODE/, log /var/log/swarmhook-netns-NODE.log.

Images: SWARMHOOK_NETNS_IMAGES (space separated) lists the images copied from
the host's daemon into every node on 'up' (default: swarmhook-test/busybox:latest).
Needs root, iproute2, util-linux (nsenter, unshare), iptables, docker.io.
EOF
}

NODES=(kvm2 kvm4 kvm8)
BRIDGE=swarmhook0
NET_PREFIX=198.18.13
STATE=/var/lib/swarmhook-netns
RUNDIR=/run/swarmhook-netns
IMAGES=${SWARMHOOK_NETNS_IMAGES:-swarmhook-test/busybox:latest}

say() { printf 'netns-swarm: %s\n' "$*"; }
die() { printf 'netns-swarm: error: %s\n' "$*" >&2; exit 1; }

addr_of() { printf '%s.%s' "$NET_PREFIX" "${1#kvm}"; }
sock_of() { printf 'unix://%s/%s/docker.sock' "$RUNDIR" "$1"; }
ns_of() { printf 'swarmhook-%s' "$1"; }
dk() { local node=$1; shift; docker -H "$(sock_of "$node")" "$@"; }

daemon_up() { dk "$1" info >/dev/null 2>&1; }

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

bridge_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET_PREFIX.1/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  # a root dockerd sets FORWARD to DROP; bridged traffic between the nodes must still pass
  iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null ||
    iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
}

netns_up() {
  local node=$1 ns veth
  ns=$(ns_of "$node")
  veth="shv-$node"
  if ! ip netns list | grep -qw "$ns"; then
    ip netns add "$ns"
  fi
  if ! ip link show "$veth" >/dev/null 2>&1; then
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" addr add "$(addr_of "$node")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    # no default route on purpose: nothing leaves the test range, and a registry pull fails
    # at once (ENETUNREACH) instead of waiting out a DNS timeout before using the loaded image
  fi
}

dockerd_up() {
  local node=$1 run="$RUNDIR/$1"
  if daemon_up "$node"; then return 0; fi
  mkdir -p "$run" "$STATE/$node"
  local _
  # a daemon still starting or shutting down holds the pid file: wait until it answers or is gone
  for _ in $(seq 60); do
    pid_alive "$run/docker.pid" || break
    daemon_up "$node" && return 0
    sleep 0.5
  done
  pid_alive "$run/docker.pid" && die "dockerd for $node (pid $(cat "$run/docker.pid")) neither answers nor exits"
  # a pid file whose process is gone would stop dockerd from starting
  rm -f "$run/docker.pid"
  # nsenter, not 'ip netns exec': the latter remounts /sys and hides the cgroups from dockerd
  # shellcheck disable=SC2016 # $1 and $@ belong to the inner sh
  nsenter --net="/run/netns/$(ns_of "$node")" unshare --uts -- sh -c \
    'hostname "$1"; shift; exec setsid dockerd "$@"' sh "$node" \
    --data-root "$STATE/$node" --exec-root "$run/exec" --pidfile "$run/docker.pid" \
    --insecure-registry "$NET_PREFIX.0/24" \
    -H "$(sock_of "$node")" >>"/var/log/swarmhook-netns-$node.log" 2>&1 </dev/null &
  for _ in $(seq 60); do
    daemon_up "$node" && return 0
    sleep 0.5
  done
  die "dockerd for $node did not answer in 30 s; see /var/log/swarmhook-netns-$node.log"
}

swarm_state() { dk "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo down; }

swarm_up() {
  local leader=kvm8 node token
  if [[ $(swarm_state "$leader") != active ]]; then
    dk "$leader" swarm init --advertise-addr "$(addr_of "$leader")" --listen-addr "$(addr_of "$leader"):2377" >/dev/null
  fi
  token=$(dk "$leader" swarm join-token -q manager)
  for node in "${NODES[@]}"; do
    [[ $node == "$leader" ]] && continue
    if [[ $(swarm_state "$node") != active ]]; then
      dk "$node" swarm join --token "$token" --advertise-addr "$(addr_of "$node")" \
        --listen-addr "$(addr_of "$node"):2377" "$(addr_of "$leader"):2377" >/dev/null
    fi
  done
  dk "$leader" node update --label-add edge=true kvm8 >/dev/null
}

images_up() {
  local image node
  for image in $IMAGES; do
    docker image inspect "$image" >/dev/null 2>&1 || die "image $image is not on the host daemon; run scripts/test-env.sh first"
    for node in "${NODES[@]}"; do
      if [[ $(dk "$node" image inspect -f '{{.Id}}' "$image" 2>/dev/null) != "$(docker image inspect -f '{{.Id}}' "$image")" ]]; then
        docker save "$image" | dk "$node" load -q >/dev/null
      fi
    done
  done
}

cmd_up() {
  [[ $(id -u) == 0 ]] || die "must run as root (namespaces, bridge, dockerd)"
  command -v dockerd >/dev/null || die "dockerd not found: apt-get install docker.io"
  bridge_up
  local node
  for node in "${NODES[@]}"; do netns_up "$node"; done
  for node in "${NODES[@]}"; do dockerd_up "$node"; done
  swarm_up
  images_up
  say "up: kvm2 $(addr_of kvm2), kvm4 $(addr_of kvm4), kvm8 $(addr_of kvm8) (edge) on $BRIDGE"
}

stop_pidfile() {
  local pidfile=$1 _
  pid_alive "$pidfile" || return 0
  kill "$(cat "$pidfile")" 2>/dev/null || true
  for _ in $(seq 40); do
    pid_alive "$pidfile" || return 0
    sleep 0.5
  done
  kill -9 "$(cat "$pidfile")" 2>/dev/null || true
}

cmd_down() {
  [[ $(id -u) == 0 ]] || die "must run as root"
  local node run
  for node in "${NODES[@]}"; do
    run="$RUNDIR/$node"
    stop_pidfile "$run/docker.pid"
    stop_pidfile "$run/exec/containerd/containerd.pid"
    # anything a killed daemon left mounted (overlays, netns handles) must go before its state
    awk -v a="$STATE/$node" -v b="$run" '$2 ~ "^"a || $2 ~ "^"b {print $2}' /proc/mounts | sort -r |
      while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
    rm -rf "${STATE:?}/$node" "${run:?}"
    # keep the last run's log for a look after a failure, start the next one empty
    [[ -f /var/log/swarmhook-netns-$node.log ]] && mv "/var/log/swarmhook-netns-$node.log" "/var/log/swarmhook-netns-$node.log.1"
    ip netns del "$(ns_of "$node")" 2>/dev/null || true
    ip link del "shv-$node" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  while iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do
    iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
  done
  say "down: namespaces, bridge and node state removed"
}

cmd_status() {
  local node state ok=0
  for node in "${NODES[@]}"; do
    state=$(swarm_state "$node")
    printf '%s\t%s\t%s\tswarm=%s\n' "$node" "$(addr_of "$node")" "$(sock_of "$node")" "$state"
    [[ $state == active ]] || ok=1
  done
  return "$ok"
}

cmd_env() {
  local node
  for node in "${NODES[@]}"; do printf '%s=%s\n' "$node" "$(sock_of "$node")"; done
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
