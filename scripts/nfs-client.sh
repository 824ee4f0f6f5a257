#!/usr/bin/env bash
# Mount the spool exported by kvm8 on a manager (kvm2, kvm4), over WireGuard.
set -euo pipefail

usage() {
  cat <<'EOF_HELP'
Usage: sudo scripts/nfs-client.sh [--help]

On kvm2 and kvm4. Safe to run twice. Installs nfs-common and adds this fstab line:
  NFS_SERVER:EXPORT_DIR SPOOL_DIR nfs4 rw,hard,noatime,_netdev,actimeo=1,lookupcache=positive,
    x-systemd.automount,x-systemd.requires=wg-quick@WG_IF.service,x-systemd.mount-timeout=30 0 0
actimeo=1 and lookupcache=positive shorten the attribute cache (acdirmin is 30 s by default,
nfs(5)), so a job written on another node shows up within about a second; x-systemd.automount
mounts on first use, after WireGuard (wg-quick@WG_IF) is up, so a boot never hangs on NFS.
Environment: NFS_SERVER (kvm8's WireGuard address, default 10.100.0.8), EXPORT_DIR
(/srv/nfs/webhook_jobs), SPOOL_DIR (/mnt/nfs/webhook_jobs), WG_IF (wg0), APP_GID (1011).
EOF_HELP
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -eq 0 ]] || { usage >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "nfs-client: error: run as root" >&2; exit 1; }

NFS_SERVER=${NFS_SERVER:-10.100.0.8}
EXPORT_DIR=${EXPORT_DIR:-/srv/nfs/webhook_jobs}
SPOOL_DIR=${SPOOL_DIR:-/mnt/nfs/webhook_jobs}
WG_IF=${WG_IF:-wg0}
APP_GID=${APP_GID:-1011}
say() { printf 'nfs-client: %s\n' "$*"; }

DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nfs-common >/dev/null
# the api containers write as gid 1011: the group must mean the same on every node
getent group app >/dev/null || groupadd --gid "$APP_GID" app
install -d "$SPOOL_DIR"
line="$NFS_SERVER:$EXPORT_DIR $SPOOL_DIR nfs4 rw,hard,noatime,_netdev,actimeo=1,lookupcache=positive,x-systemd.automount,x-systemd.requires=wg-quick@$WG_IF.service,x-systemd.mount-timeout=30 0 0"
if grep -qF "$line" /etc/fstab; then
  say "/etc/fstab: entry present"
else
  sed -i "\\# $SPOOL_DIR nfs#d" /etc/fstab
  printf '%s\n' "$line" >>/etc/fstab
  say "/etc/fstab: $line"
fi
systemctl daemon-reload
systemctl restart "$(systemd-escape -p --suffix=automount "$SPOOL_DIR")" 2>/dev/null || mount "$SPOOL_DIR" || true
ls "$SPOOL_DIR" >/dev/null && say "$SPOOL_DIR: mounted from $NFS_SERVER:$EXPORT_DIR"
