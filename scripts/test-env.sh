#!/usr/bin/env bash
# Install and start the real services the test suite needs; safe to run again and again.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/test-env.sh [--demo] [--help]

Brings this machine to the state the test suite needs, printing one line per
service with what it found or did:
  packages  Debian's docker.io, iptables, postgresql, bindfs, busybox-static,
            shellcheck, systemd (for systemd-analyze), age (the age CLI the
            secrets tests check interoperability with), tmux (a terminal for
            swarmhook follow's display); one 'apt-get update', then install
            what is missing
  just      the 'just' binary from npm's rust-just package (global, outside the lockfile)
  dockerd   started in the background when none answers (log /var/log/swarmhook-dockerd.log)
  cli       a docker CLI >= 26 (stack config, stack deploy --detach) is on PATH
  swarm     a one-node swarm on 127.0.0.1 when none is active
  images    swarmhook-test/busybox:latest, FROM scratch + Debian's static busybox
  postgres  initdb found; throwaway clusters a dead test run left in /tmp removed
  netns     a three-node test swarm a dead run left behind is taken down
  fuse      /dev/fuse present for bindfs
  registry  Debian's docker-registry on 127.0.0.1:5000 (pushes give real digests;
            data in /var/lib/swarmhook-test-registry, log /var/log/swarmhook-registry.log);
            apache2-utils' htpasswd and openssl for the authenticated registries (htpasswd,
            token) the image tests start on loopback ports of their own
  chromium  Debian's chromium for the page tests

--demo    only what `npm start` (swarmhook local) needs: docker.io, iptables and
          busybox-static, dockerd, the CLI check, the swarm and the image.
Needs root and apt-get on Debian 12 or 13; without them it names what to install.
Environment: SWARMHOOK_JUST_VERSION (default 1.57.0). To set up an engine of your own instead
of this machine's (the suite's destructive tests do, in a network namespace): DOCKER_HOST names
it, SWARMHOOK_DOCKERD is the command that starts it when it does not answer (words split on
spaces), SWARMHOOK_DOCKERD_PIDFILE its pid file, SWARMHOOK_DOCKERD_LOG its log.
EOF
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
DEMO=false
[[ ${1:-} == --demo ]] && DEMO=true
[[ -z ${1:-} || $DEMO == true ]] || { usage >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JUST_VERSION=${SWARMHOOK_JUST_VERSION:-1.57.0}
PACKAGES=(docker.io iptables postgresql bindfs busybox-static shellcheck systemd docker-registry apache2-utils openssl chromium curl age tmux)
DEMO_PACKAGES=(docker.io iptables busybox-static)
DOCKERD_LOG=${SWARMHOOK_DOCKERD_LOG:-/var/log/swarmhook-dockerd.log}
DOCKERD_PIDFILE=${SWARMHOOK_DOCKERD_PIDFILE:-/var/run/docker.pid}
DOCKERD_CMD=${SWARMHOOK_DOCKERD:-}
BASE_IMAGE=swarmhook-test/busybox:latest

say() { printf 'test-env: %-9s %s\n' "$1" "$2"; }
die() { printf 'test-env: error: %s\n' "$*" >&2; exit 1; }

pg_bindir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -x $dir/initdb ]] && { printf '%s\n' "$dir"; return 0; }
  done
  return 1
}

missing_packages() {
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || printf '%s\n' "$pkg"
  done
}

ensure_packages() {
  local missing
  if ! command -v dpkg-query >/dev/null; then
    die "no dpkg here: install ${PACKAGES[*]} (Debian package names) by hand"
  fi
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    say packages "found: ${PACKAGES[*]}"
    return
  fi
  [[ $(id -u) == 0 ]] || die "not root: run 'sudo apt-get install ${missing[*]}', then run this again"
  command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} by hand"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say packages "installed: ${missing[*]}"
}

ensure_just() {
  if command -v just >/dev/null && just --version >/dev/null 2>&1; then
    say just "found: $(just --version)"
    return
  fi
  command -v npm >/dev/null || die "no npm: install just (https://just.systems) or Node.js with npm"
  # rust-just ships the real binary; as a dev dependency it would break `npm ci` here (its per-platform
  # optional packages are missing from this npm registry)
  npm install -g --silent "rust-just@$JUST_VERSION" >/dev/null 2>&1 || die "npm install -g rust-just@$JUST_VERSION failed"
  command -v just >/dev/null || die "rust-just installed but 'just' is not on PATH ($(npm prefix -g)/bin)"
  say just "installed: $(just --version)"
}

ensure_dockerd() {
  if docker info >/dev/null 2>&1; then
    say dockerd "found: running, server $(docker version -f '{{.Server.Version}}')"
    return
  fi
  [[ $(id -u) == 0 ]] || die "dockerd is not running and this is not root: start it (systemctl start docker)"
  # a dockerd still starting or stopping holds the pid file: wait for it to answer or to exit
  local pidfile=$DOCKERD_PIDFILE _ cmd
  for _ in $(seq 120); do
    if ! { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then break; fi
    docker info >/dev/null 2>&1 && { say dockerd "found: running, server $(docker version -f '{{.Server.Version}}')"; return; }
    sleep 0.5
  done
  # a pid file whose process is gone stops dockerd from starting
  if [[ -f $pidfile ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    rm -f "$pidfile"
    say dockerd "removed stale $pidfile"
  fi
  if [[ -n $DOCKERD_CMD ]]; then
    read -ra cmd <<<"$DOCKERD_CMD"
    setsid "${cmd[@]}" >"$DOCKERD_LOG" 2>&1 </dev/null &
  elif command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker
  else
    setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && { say dockerd "started, server $(docker version -f '{{.Server.Version}}')"; return; }
    sleep 0.5
  done
  die "dockerd did not answer within 30 s; see $DOCKERD_LOG"
}

ensure_cli() {
  # the watcher runs `docker stack deploy --detach=false` and `docker stack config`: CLI 26 or newer
  if ! docker stack config --help >/dev/null 2>&1 || ! docker stack deploy --help 2>/dev/null | grep -q -- '--detach'; then
    die "the docker CLI ($(command -v docker), $(docker version -f '{{.Client.Version}}' 2>/dev/null)) lacks 'stack config' or 'stack deploy --detach': install a Docker CLI >= 26 (docker-ce-cli)"
  fi
  say cli "found: $(command -v docker) $(docker version -f '{{.Client.Version}}'), API $(docker version -f '{{.Client.APIVersion}}') against server API $(docker version -f '{{.Server.APIVersion}}')"
}

ensure_swarm() {
  local state
  state=$(docker info -f '{{.Swarm.LocalNodeState}}')
  case $state in
    active) say swarm "found: active, $(docker info -f '{{.Swarm.Nodes}}') node(s)" ;;
    inactive)
      docker swarm init --advertise-addr 127.0.0.1 >/dev/null
      say swarm "initialised a one-node swarm on 127.0.0.1"
      ;;
    *)
      docker swarm leave --force >/dev/null 2>&1 || true
      docker swarm init --advertise-addr 127.0.0.1 >/dev/null
      say swarm "was '$state': left it and initialised a one-node swarm"
      ;;
  esac
}

ensure_images() {
  local busybox=/bin/busybox want have ctx
  [[ -x $busybox ]] || die "$busybox missing: apt-get install busybox-static"
  want=$(sha256sum "$busybox" | cut -c1-16)
  have=$(docker image inspect -f '{{index .Config.Labels "swarmhook.busybox"}}' "$BASE_IMAGE" 2>/dev/null || true)
  if [[ $have == "$want" ]]; then
    say images "found: $BASE_IMAGE"
    return
  fi
  ctx=$(mktemp -d)
  cp "$busybox" "$ctx/busybox"
  cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
LABEL swarmhook.busybox="$want"
CMD ["/bin/sh"]
EOF
  # the legacy builder: Debian's docker.io has no buildx plugin, and no registry is reachable
  DOCKER_BUILDKIT=0 docker build -q -t "$BASE_IMAGE" "$ctx" >/dev/null 2>&1 || die "building $BASE_IMAGE failed"
  rm -rf "$ctx"
  say images "built: $BASE_IMAGE"
}

ensure_postgres() {
  local bindir dir pid removed=0
  bindir=$(pg_bindir) || die "initdb not found: apt-get install postgresql"
  for dir in /tmp/swarmhook-pg-*; do
    [[ -d $dir ]] || continue
    pid=$(head -n1 "$dir/data/postmaster.pid" 2>/dev/null || true)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then continue; fi
    rm -rf "$dir"
    removed=$((removed + 1))
  done
  say postgres "found: $bindir/initdb ($("$bindir/initdb" --version | awk '{print $3}')); removed $removed stale temp cluster(s)"
}

ensure_netns_clean() {
  if ip link show swarmhook0 >/dev/null 2>&1 || ip netns list 2>/dev/null | grep -q '^swarmhook-'; then
    bash "$HERE/netns-swarm.sh" down >/dev/null
    say netns "removed a three-node test swarm left by an earlier run"
  else
    say netns "clean: no test namespaces or bridge"
  fi
}

REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_DIR=/var/lib/swarmhook-test-registry
ensure_registry() {
  local _
  if curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/" 2>/dev/null; then
    say registry "found: http://$REGISTRY_ADDR"
    return
  fi
  command -v docker-registry >/dev/null || die "docker-registry missing: apt-get install docker-registry"
  mkdir -p "$REGISTRY_DIR"
  printf '%s\n' 'version: 0.1' 'log: { level: warn }' \
    "storage: { filesystem: { rootdirectory: $REGISTRY_DIR/data }, delete: { enabled: true } }" \
    "http: { addr: $REGISTRY_ADDR }" >"$REGISTRY_DIR/config.yml"
  setsid docker-registry serve "$REGISTRY_DIR/config.yml" >/var/log/swarmhook-registry.log 2>&1 </dev/null &
  for _ in $(seq 40); do
    curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/" 2>/dev/null && { say registry "started on http://$REGISTRY_ADDR"; return; }
    sleep 0.25
  done
  die "docker-registry did not answer on $REGISTRY_ADDR within 10 s; see /var/log/swarmhook-registry.log"
}

ensure_chromium() {
  command -v chromium >/dev/null || die "chromium missing: apt-get install chromium"
  say chromium "found: $(chromium --version 2>/dev/null | head -n1)"
}

ensure_fuse() {
  [[ -e /dev/fuse ]] || modprobe fuse 2>/dev/null || true
  [[ -e /dev/fuse ]] || die "/dev/fuse missing: bindfs needs the fuse kernel module (modprobe fuse)"
  say fuse "found: /dev/fuse"
}

if [[ $DEMO == true ]]; then
  PACKAGES=("${DEMO_PACKAGES[@]}")
  ensure_packages
  ensure_dockerd
  ensure_cli
  ensure_swarm
  ensure_images
  exit 0
fi
ensure_packages
ensure_just
ensure_dockerd
ensure_cli
ensure_swarm
ensure_images
ensure_postgres
ensure_netns_clean
ensure_fuse
ensure_registry
ensure_chromium
