#!/usr/bin/env bash
# Lay out the spool with the ownership and modes of its trust boundary (run by watcher-install.sh).
set -euo pipefail

usage() {
  cat <<'EOF_HELP'
Usage: sudo SPOOL_DIR=/mnt/nfs/webhook_jobs scripts/spool-setup.sh [--help]

The API (group app, gid 1011, in a container on every node) faces the internet: assume it
compromised. It may write only its requests; everything the watcher decides from is the watcher's.
  root                      WATCHER_USER:app 2750   the group may enter, never add, rename or remove
  tmp/ new/ ids/            WATCHER_USER:app 2770   the API's requests (default ACL keeps them group-readable)
  work/ done/ failed/       WATCHER_USER:app 2750   the watcher's: group app reads (the history page),
  state/ index/ wtmp/                               never writes; files 0640, no ACL
Safe to run again: it also corrects an older spool that was group-writable throughout (2770/0660).
Environment: SPOOL_DIR (required), WATCHER_USER (swarmhook), APP_GID (1011).
EOF_HELP
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -eq 0 ]] || { usage >&2; exit 2; }

say() { printf 'spool-setup: %s\n' "$*"; }
die() { printf 'spool-setup: error: %s\n' "$*" >&2; exit 1; }

WATCHER_USER=${WATCHER_USER:-swarmhook}
APP_GID=${APP_GID:-1011}
[[ -n ${SPOOL_DIR:-} ]] || die "SPOOL_DIR is required (the spool root, e.g. /mnt/nfs/webhook_jobs)"
[[ -d $SPOOL_DIR ]] || die "$SPOOL_DIR is not there: mount the spool first (scripts/nfs-server.sh on kvm8)"
[[ $(id -u) == 0 ]] || die "run as root (sudo)"
id "$WATCHER_USER" >/dev/null 2>&1 || die "user $WATCHER_USER does not exist (scripts/watcher-install.sh creates it)"

acl() {
  if command -v setfacl >/dev/null; then setfacl "$@" 2>/dev/null || true; fi
}

chown "$WATCHER_USER:$APP_GID" "$SPOOL_DIR"
chmod 2750 "$SPOOL_DIR"
acl -b "$SPOOL_DIR"
for sub in tmp new ids; do
  mkdir -p "$SPOOL_DIR/$sub"
  chown "$WATCHER_USER:$APP_GID" "$SPOOL_DIR/$sub"
  chmod 2770 "$SPOOL_DIR/$sub"
  acl -b "$SPOOL_DIR/$sub"
  acl -m g::rwx -d -m "g:$APP_GID:rwx" -d -m u::rwx -d -m o::- "$SPOOL_DIR/$sub"
done
for sub in work "done" failed state index wtmp; do
  mkdir -p "$SPOOL_DIR/$sub"
  # what an older spool let the group write: the watcher's own files, read-only for the group
  chown -R "$WATCHER_USER:$APP_GID" "$SPOOL_DIR/$sub"
  acl -R -b "$SPOOL_DIR/$sub"
  chmod 2750 "$SPOOL_DIR/$sub"
  find "$SPOOL_DIR/$sub" -mindepth 1 -maxdepth 1 -type f -exec chmod 0640 {} +
done
# the outbox moved to STATE_DIR on the watcher's node: one left on the spool is the watcher's, never read
if [[ -d $SPOOL_DIR/outbox ]]; then
  chown -R "$WATCHER_USER:$APP_GID" "$SPOOL_DIR/outbox"
  chmod 0700 "$SPOOL_DIR/outbox"
  say "outbox/ on the spool is no longer read (reports wait in STATE_DIR/outbox): locked to $WATCHER_USER, remove it when empty"
fi
say "$SPOOL_DIR: root 2750; tmp/ new/ ids/ 2770 (group app writes requests); work/ done/ failed/ state/ index/ wtmp/ 2750, files 0640 ($WATCHER_USER:$APP_GID)"
