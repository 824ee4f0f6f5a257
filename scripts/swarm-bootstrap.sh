#!/usr/bin/env bash
# Prepare a swarm for stack/stack.yaml: overlay networks, the edge label, secrets from .env.
set -euo pipefail

usage() {
  cat <<'EOF_HELP'
Usage: scripts/swarm-bootstrap.sh networks|label [NODE]|secrets|all [--help]

Run on a manager (kvm8, kvm4 or kvm2) after `docker swarm init` / `join`. Safe to run twice:
what exists is left as it is and reported.
  networks      create the attachable overlay networks `public` (Traefik <-> api, frontend)
                and `internal` (api <-> postgres, encrypted)
  label [NODE]  put edge=true on NODE (default kvm8): Traefik and Postgres run there
  secrets       create the Docker secrets github_webhook_secret, postgres_password and
                history_token from GITHUB_WEBHOOK_SECRET, POSTGRES_PASSWORD and HISTORY_TOKEN
                in .env (or the environment); only those missing are created.
                A secret is immutable: to rotate one, remove the stack's use of it first
                (docker secret rm NAME fails while a service uses it)
  all           networks, label kvm8, secrets
Environment: ENV_FILE (default .env in the current directory).
EOF_HELP
}

say() { printf 'swarm-bootstrap: %s\n' "$*"; }
die() { printf 'swarm-bootstrap: error: %s\n' "$*" >&2; exit 1; }

require_manager() {
  command -v docker >/dev/null || die "docker not found: install docker (docker.io or docker-ce)"
  [[ $(docker info -f '{{.Swarm.ControlAvailable}}' 2>/dev/null) == true ]] ||
    die "this node is not a swarm manager: run it on kvm8, kvm4 or kvm2 (docker swarm init / join first)"
}

networks() {
  local name opts
  for name in public internal; do
    if docker network inspect "$name" >/dev/null 2>&1; then
      say "network $name: exists"
      continue
    fi
    opts=(--driver overlay --attachable)
    [[ $name == internal ]] && opts+=(--opt encrypted)
    docker network create "${opts[@]}" "$name" >/dev/null
    say "network $name: created"
  done
}

label() {
  local node=${1:-kvm8}
  docker node inspect "$node" >/dev/null 2>&1 || die "no swarm node named $node (docker node ls)"
  docker node update --label-add edge=true "$node" >/dev/null
  say "node $node: edge=true"
}

load_env() {
  local file=${ENV_FILE:-.env}
  if [[ -f $file ]]; then
    set -a
    # shellcheck disable=SC1090 # the operator's .env
    . "$file"
    set +a
  fi
}

secrets() {
  load_env
  local name var value
  for name in github_webhook_secret postgres_password history_token; do
    case $name in
      github_webhook_secret) var=GITHUB_WEBHOOK_SECRET ;;
      postgres_password) var=POSTGRES_PASSWORD ;;
      history_token) var=HISTORY_TOKEN ;;
    esac
    if docker secret inspect "$name" >/dev/null 2>&1; then
      say "secret $name: exists (left unchanged)"
      continue
    fi
    value=${!var:-}
    [[ -n $value ]] || die "$var is empty: set it in ${ENV_FILE:-.env} (openssl rand -hex 32)"
    [[ ! $value =~ ^(change|replace)-?me ]] || die "$var is still the placeholder from .env.example: set a real secret (openssl rand -hex 32)"
    [[ $name == postgres_password || ${#value} -ge 32 ]] || die "$var must be at least 32 characters (openssl rand -hex 32)"
    printf '%s' "$value" | docker secret create "$name" - >/dev/null
    say "secret $name: created from $var"
  done
}

case "${1:-}" in
  -h | --help | help) usage ;;
  networks) require_manager; networks ;;
  label) require_manager; label "${2:-kvm8}" ;;
  secrets) require_manager; secrets ;;
  all) require_manager; networks; label kvm8; secrets ;;
  *) usage >&2; exit 2 ;;
esac
