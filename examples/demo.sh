#!/usr/bin/env bash
# The README's demo: install, bring the lab up with the sample services running an older commit
# than deploy.json names, show the drift headless, apply backend-core to dev and read the dev
# runtime back, then open the console on the lab workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install
export UNIDESK_LAB_DIR=${UNIDESK_LAB_DIR:-/tmp/unidesk-lab}
.venv/bin/unidesk lab up --seed --dir "$UNIDESK_LAB_DIR" >/dev/null
workspace="$UNIDESK_LAB_DIR/workspace"
echo "lab up: workspace $workspace (tear down with: .venv/bin/unidesk lab down --dir $UNIDESK_LAB_DIR)"
echo "--- unidesk --workspace $workspace deploy check"
.venv/bin/unidesk --workspace "$workspace" deploy check | (command -v jq >/dev/null && jq -c '.services[] | {id, target, state: .live.state, action, reason}' || cat) || true
# A dev apply: backend-core built on D601 from the commit origin/deploy/dev names, gated by the
# validate step, rolled out into unidesk-dev (its own pod network, beside production), verified.
echo "--- unidesk --workspace $workspace deploy apply --env dev --service backend-core --wait"
.venv/bin/unidesk --workspace "$workspace" deploy apply --env dev --service backend-core --wait \
  | (command -v jq >/dev/null && jq -c '{status, steps: [.job.steps[] | "\(.name):\(.status)"], errors}' || cat) || true
echo "--- unidesk --workspace $workspace deploy check --env dev --live --service backend-core"
.venv/bin/unidesk --workspace "$workspace" deploy check --env dev --live --service backend-core \
  | (command -v jq >/dev/null && jq -c '.services[] | {id, state: .live.state, running: .live.commit, action, applyEnabled}' || cat) || true
if [ -t 1 ] && [ -t 0 ]; then
  exec .venv/bin/unidesk --workspace "$workspace"
fi
echo "(no terminal: the console would open here: .venv/bin/unidesk --workspace $workspace)"
