#!/usr/bin/env bash
# npm test's first step: refuse, within seconds, to run the suite on a node that serves anything real.
set -euo pipefail

usage() {
  cat <<'EOF_HELP'
Usage: bash scripts/test-guard.sh [--help]

The test suite deploys stacks into this machine's swarm and starts engines of its own. It must never
run on a production node (kvm2, kvm4, kvm8). Before anything is installed or started, this refuses
(exit 1) when the Docker engine here
  - is part of a swarm of more than one node, or a worker of one, or
  - runs services that neither the suite nor `npm start` created (the suite's stacks are named
    shtest-*, shlocal-*, shbench-*, shdoc-*, shlate, shlog, shpickup, shbroken; the quick start's is
    swarmhook-demo; a service labelled swarmhook.test=true is the suite's too).
No engine answering (a fresh machine): nothing to harm, go on. Override, knowing what it does:
SWARMHOOK_TEST_ON_THIS_NODE=1 npm test
EOF_HELP
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ ${SWARMHOOK_TEST_ON_THIS_NODE:-} == 1 ]] && { echo "test-guard: SWARMHOOK_TEST_ON_THIS_NODE=1: not checking this node"; exit 0; }

refuse() {
  printf 'test-guard: refusing to run the test suite on this node: %s.\n' "$1" >&2
  printf 'test-guard: the suite deploys into this swarm and starts engines of its own; run it on a machine of its own\n' >&2
  printf 'test-guard: (CI, a throwaway VM), never on kvm2, kvm4 or kvm8. Override: SWARMHOOK_TEST_ON_THIS_NODE=1 npm test\n' >&2
  exit 1
}

command -v docker >/dev/null 2>&1 || exit 0
info=$(timeout 5 docker info -f '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}}' 2>/dev/null) || exit 0
read -r state control nodes <<<"$info"
[[ $state == active ]] || exit 0
[[ $control == true ]] || refuse "it is a worker of a swarm"
[[ ${nodes:-0} -le 1 ]] || refuse "it is one of the $nodes nodes of a swarm ($(timeout 5 docker node ls --format '{{.Hostname}}' 2>/dev/null | paste -sd, -))"
ours='^(shtest|shlocal|shbench|shdoc|shlate|shlog|shpickup|shbroken|swarmhook-demo)[-_]'
foreign=()
while read -r name label; do
  [[ -z $name ]] && continue
  [[ $name =~ $ours || $label == true ]] && continue
  foreign+=("$name")
done < <(
  mapfile -t ids < <(timeout 5 docker service ls -q 2>/dev/null)
  ((${#ids[@]} == 0)) || timeout 5 docker service inspect --format '{{.Spec.Name}} {{index .Spec.Labels "swarmhook.test"}}' "${ids[@]}" 2>/dev/null
)
((${#foreign[@]} == 0)) || refuse "it runs services the suite did not create: ${foreign[*]:0:5}$( ((${#foreign[@]} > 5)) && echo " and $((${#foreign[@]} - 5)) more")"
exit 0
