#!/usr/bin/env bash
# UFW rules for Docker Swarm and NFS over WireGuard; only 22, 80, 443 and WireGuard face the internet.
set -euo pipefail

usage() {
  cat <<'EOF_HELP'
Usage: sudo scripts/ufw-swarm.sh [--edge] [--help]

On every node. Safe to run twice (ufw skips rules it has). Allows, on the WireGuard interface
WG_IF (wg0) from WG_NET (10.100.0.0/24) only: 2377/tcp (swarm management), 7946/tcp+udp
(gossip), 4789/udp (overlay VXLAN), 2049/tcp (NFS, used on kvm8). From anywhere: 22/tcp and
WG_PORT/udp (51820). With --edge (kvm8): 80/tcp and 443/tcp for Traefik.
Note: ports Docker publishes bypass UFW (Docker writes its own iptables rules); only Traefik
publishes ports in stack.yaml, on kvm8, in host mode.
Environment: WG_IF, WG_NET, WG_PORT.
EOF_HELP
}

EDGE=false
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    --edge) EDGE=true ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "ufw-swarm: error: run as root" >&2; exit 1; }
command -v ufw >/dev/null || { echo "ufw-swarm: error: ufw not found: apt-get install ufw" >&2; exit 1; }

WG_IF=${WG_IF:-wg0}
WG_NET=${WG_NET:-10.100.0.0/24}
WG_PORT=${WG_PORT:-51820}

ufw default deny incoming >/dev/null
ufw default allow outgoing >/dev/null
ufw allow 22/tcp >/dev/null
ufw allow "$WG_PORT/udp" >/dev/null
for rule in 2377/tcp 7946/tcp 7946/udp 4789/udp 2049/tcp; do
  ufw allow in on "$WG_IF" from "$WG_NET" to any port "${rule%/*}" proto "${rule#*/}" >/dev/null
done
if [[ $EDGE == true ]]; then
  ufw allow 80/tcp >/dev/null
  ufw allow 443/tcp >/dev/null
fi
ufw --force enable >/dev/null
echo "ufw-swarm: rules in place (edge: $EDGE)"
ufw status numbered
