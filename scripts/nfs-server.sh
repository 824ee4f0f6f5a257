#!/usr/bin/env bash
# Export the spool from the edge node (kvm8) to the managers over WireGuard, and bind it locally.
set -euo pipefail

usage() {
  cat <<'EOF_HELP'
Usage: sudo scripts/nfs-server.sh [--help]

On kvm8 (the NFS server). Safe to run twice.
  1. nfs-kernel-server and acl from Debian
  2. EXPORT_DIR (default /srv/nfs/webhook_jobs): group app (1011), mode 2750; its subdirectories and
     owners are laid out by scripts/watcher-install.sh (scripts/spool-setup.sh)
  3. /etc/exports: EXPORT_DIR to WG_NET (default 10.100.0.0/24), rw,sync,root_squash, only over WireGuard
  4. SPOOL_DIR (default /mnt/nfs/webhook_jobs) as a bind mount of EXPORT_DIR (fstab), so the
     watcher and the api replica on kvm8 use the same path as kvm2/kvm4, and the watcher reads
     local files: nfsd's writes for other nodes are local writes here, with no attribute cache
Environment: EXPORT_DIR, SPOOL_DIR, WG_NET, APP_GID.
EOF_HELP
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -eq 0 ]] || { usage >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "nfs-server: error: run as root" >&2; exit 1; }

EXPORT_DIR=${EXPORT_DIR:-/srv/nfs/webhook_jobs}
SPOOL_DIR=${SPOOL_DIR:-/mnt/nfs/webhook_jobs}
WG_NET=${WG_NET:-10.100.0.0/24}
APP_GID=${APP_GID:-1011}
say() { printf 'nfs-server: %s\n' "$*"; }

DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nfs-kernel-server acl >/dev/null
getent group app >/dev/null || groupadd --gid "$APP_GID" app
# the root is never group-writable (the API must not replace done/ or state/); watcher-install.sh
# (scripts/spool-setup.sh) then gives it to the watcher and lays out who may write which subdirectory
if [[ -d $EXPORT_DIR ]]; then
  say "$EXPORT_DIR: exists (its modes are scripts/spool-setup.sh's to set)"
else
  install -d -m 2750 -g app "$EXPORT_DIR"
  say "$EXPORT_DIR: created, group app, 2750; next: sudo scripts/watcher-install.sh"
fi

line="$EXPORT_DIR $WG_NET(rw,sync,no_subtree_check,root_squash)"
if grep -qF "$line" /etc/exports; then
  say "/etc/exports: entry present"
else
  printf '%s\n' "$line" >>/etc/exports
  say "/etc/exports: added $line"
fi
exportfs -ra
systemctl enable --now nfs-server >/dev/null

install -d "$SPOOL_DIR"
fstab="$EXPORT_DIR $SPOOL_DIR none bind,x-systemd.requires-mounts-for=$EXPORT_DIR 0 0"
grep -qF "$fstab" /etc/fstab || printf '%s\n' "$fstab" >>/etc/fstab
mountpoint -q "$SPOOL_DIR" || mount "$SPOOL_DIR"
say "$SPOOL_DIR: bind mount of $EXPORT_DIR"
