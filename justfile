# swarmhook operations, run on a manager (kvm8, kvm4 or kvm2) from the checkout in /opt/swarmhook.
# Values come from .env (copy .env.example); every recipe says what it runs with `just -n RECIPE`.
set dotenv-load
set shell := ["bash", "-euo", "pipefail", "-c"]

stack_name := env("STACK_NAME", "app")
stack_file := "stack/stack.yaml"
spool := env("SPOOL_DIR", "/mnt/nfs/webhook_jobs")
watcher_env := env("WATCHER_ENV", "/etc/swarmhook/webhook-watcher.env")
compose := "docker compose -p swarmhook-local -f stack/compose.yaml"

# list the recipes
default:
    @just --list

# local: start Postgres, the API (localhost:8000) and the frontend (localhost:8080) from images
up:
    {{compose}} up -d

# local: build the API and frontend images, then start them (docker compose, for working on the app itself)
upb:
    {{compose}} up -d --build

# local: stop and remove the local containers (the database volume is kept)
down:
    {{compose}} down

# swarm: create the overlay networks `public` and `internal` (safe to run twice)
swarm-networks:
    bash scripts/swarm-bootstrap.sh networks

# swarm: label NODE as the edge node that runs Traefik and Postgres
swarm-label-edge NODE="kvm8":
    bash scripts/swarm-bootstrap.sh label {{NODE}}

# swarm: the seed's name for labelling kvm8 as the edge
swarm-label-kvm8: (swarm-label-edge "kvm8")

# swarm: create the secrets github_webhook_secret, postgres_password and history_token from .env
swarm-secrets:
    bash scripts/swarm-bootstrap.sh secrets

# deploy the stack by hand, as the watcher does (IMAGE_TAG from .env, default latest)
stack-deploy:
    docker stack deploy -c {{stack_file}} {{stack_name}} --with-registry-auth --detach=false

# the stack's services and their replicas
stack-services:
    docker stack services {{stack_name}}

# the stack's tasks: where each runs and why one failed
stack-ps:
    docker stack ps {{stack_name}} --no-trunc

# follow one service's logs, e.g. just stack-logs api
stack-logs SERVICE:
    docker service logs -f --tail 200 {{stack_name}}_{{SERVICE}}

# install (or update) the webhook-watcher systemd unit on this node (root)
watcher-install:
    sudo bash scripts/watcher-install.sh

# follow the watcher's journal, pretty-printed
watcher-logs:
    journalctl -u webhook-watcher -f -o cat | node_modules/.bin/pino-pretty

# the watcher's state and its last log lines
watcher-status:
    systemctl status webhook-watcher --no-pager

# queue a manual deploy of SHA through the spool (the watcher picks it up like a push)
deploy-now SHA:
    node dist/bin/swarmhook.js enqueue --spool {{spool}} --sha {{SHA}}

# redeploy STACK's last good release (or SHA's) by the image digests recorded then; the watcher verifies it
rollback STACK SHA="":
    node dist/bin/swarmhook.js rollback --spool {{spool}} --stack {{STACK}} {{ if SHA == "" { "" } else { "--to " + SHA } }}

# what deploying SHA (default: the branch tip, or what runs) would change in STACK; exit 2 when something would
plan STACK SHA="":
    set -a && . {{watcher_env}} && set +a && node dist/bin/swarmhook.js plan --stack {{STACK}} {{ if SHA == "" { "" } else { "--sha " + SHA } }}

# the watcher's age identity for secrets in the repository (SOPS_AGE_KEY_FILE; 0600, owned by swarmhook); prints its recipient
age-key FILE="/etc/swarmhook/age.key":
    sudo node dist/bin/swarmhook.js keygen --out {{FILE}} && sudo chown swarmhook:app {{FILE}}

# one deploy of STACK live (its running or newest job) until its outcome; the exit status says how it ended
follow STACK:
    node dist/bin/swarmhook.js follow --spool {{spool}} --stack {{STACK}}

# jobs waiting in the spool and the last outcomes
jobs:
    node dist/bin/swarmhook.js jobs --spool {{spool}}

# check what a deploy needs on this manager (the post-reboot checklist) with the watcher's config
doctor *args:
    set -a && . {{watcher_env}} && set +a && node dist/bin/swarmhook.js doctor {{args}}

# the whole test suite, on a test machine only (it refuses on a node of a real swarm: scripts/test-guard.sh)
test:
    npm test
