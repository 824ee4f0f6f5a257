#!/usr/bin/env bash
# Install or update the webhook-watcher systemd unit on the edge manager (kvm8).
set -euo pipefail

usage() {
  cat <<'EOF_HELP'
Usage: sudo scripts/watcher-install.sh [--help]

Run from the checkout in /opt/swarmhook on kvm8 (the edge manager and NFS server). Safe to run
again after a `git pull`: it rebuilds, reinstalls the unit and restarts the watcher.
  1. group app (gid 1011) and system user swarmhook (groups app, docker)
  2. the spool SPOOL_DIR (default /mnt/nfs/webhook_jobs; it must already be mounted), through
     scripts/spool-setup.sh: the API's group app writes only tmp/ new/ ids/ (2770); the root and
     work/ done/ failed/ state/ index/ wtmp/ are swarmhook's (2750, files 0640)
  3. /etc/swarmhook/webhook-watcher.env from systemd/webhook-watcher.env.example (kept if present),
     /etc/swarmhook/docker for registry credentials (DOCKER_CONFIG; run
     `sudo -u swarmhook DOCKER_CONFIG=/etc/swarmhook/docker docker login ghcr.io` once)
  4. npm ci, build to dist/, drop dev dependencies
  5. /etc/systemd/system/webhook-watcher.service, daemon-reload, enable --now
Environment: SPOOL_DIR, APP_GID (1011), WATCHER_USER (swarmhook), PREFIX (/opt/swarmhook).
EOF_HELP
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -eq 0 ]] || { usage >&2; exit 2; }

say() { printf 'watcher-install: %s\n' "$*"; }
die() { printf 'watcher-install: error: %s\n' "$*" >&2; exit 1; }

APP_GID=${APP_GID:-1011}
WATCHER_USER=${WATCHER_USER:-swarmhook}
PREFIX=${PREFIX:-/opt/swarmhook}
SPOOL_DIR=${SPOOL_DIR:-/mnt/nfs/webhook_jobs}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

[[ $(id -u) == 0 ]] || die "run as root (sudo)"
[[ $HERE == "$PREFIX" ]] || die "the checkout is $HERE, the unit expects $PREFIX: clone into $PREFIX or set PREFIX"
command -v node >/dev/null || die "node not found: apt-get install nodejs npm (Node >= 20.19)"
command -v docker >/dev/null || die "docker not found"
command -v setfacl >/dev/null || die "setfacl not found: apt-get install acl"
getent group docker >/dev/null || die "group docker missing: is Docker installed?"
mountpoint -q "$SPOOL_DIR" || [[ -d $SPOOL_DIR ]] || die "$SPOOL_DIR is not there: mount the spool first (scripts/nfs-server.sh on kvm8)"

if getent group app >/dev/null; then
  [[ $(getent group app | cut -d: -f3) == "$APP_GID" ]] || die "group app exists with another gid than $APP_GID"
  say "group app ($APP_GID): exists"
else
  groupadd --gid "$APP_GID" app
  say "group app ($APP_GID): created"
fi
if id "$WATCHER_USER" >/dev/null 2>&1; then
  usermod -a -G app,docker "$WATCHER_USER"
  say "user $WATCHER_USER: exists, groups app and docker ensured"
else
  useradd --system --gid app --groups docker --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$WATCHER_USER"
  say "user $WATCHER_USER: created"
fi

SPOOL_DIR=$SPOOL_DIR WATCHER_USER=$WATCHER_USER APP_GID=$APP_GID bash "$HERE/scripts/spool-setup.sh"
install -d -m 0750 -o root -g app /etc/swarmhook
install -d -m 0700 -o "$WATCHER_USER" -g app /etc/swarmhook/docker
if [[ -f /etc/swarmhook/webhook-watcher.env ]]; then
  say "/etc/swarmhook/webhook-watcher.env: kept"
else
  install -m 0640 -o root -g app "$HERE/systemd/webhook-watcher.env.example" /etc/swarmhook/webhook-watcher.env
  say "/etc/swarmhook/webhook-watcher.env: installed from the example: edit it"
fi

(cd "$HERE" && npm ci --no-audit --no-fund --silent && npm run build --silent && npm prune --omit=dev --silent)
say "built $HERE/dist"

install -m 0644 "$HERE/systemd/webhook-watcher.service" /etc/systemd/system/webhook-watcher.service
systemctl daemon-reload
systemctl enable --now webhook-watcher.service >/dev/null
systemctl restart webhook-watcher.service
say "webhook-watcher: $(systemctl is-active webhook-watcher.service); follow it with: journalctl -u webhook-watcher -f"
