#!/usr/bin/env bash
# The README's demo: install, bring the lab up with the sample services running an older commit
# than deploy.json names, show the drift headless, then open the console on the lab workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install
export UNIDESK_LAB_DIR=${UNIDESK_LAB_DIR:-/tmp/unidesk-lab}
.venv/bin/unidesk lab up --seed --dir "$UNIDESK_LAB_DIR" >/dev/null
workspace="$UNIDESK_LAB_DIR/workspace"
echo "lab up: workspace $workspace (tear down with: .venv/bin/unidesk lab down --dir $UNIDESK_LAB_DIR)"
echo "--- unidesk --workspace $workspace deploy check"
.venv/bin/unidesk --workspace "$workspace" deploy check | (command -v jq >/dev/null && jq -c '.services[] | {id, target, state: .live.state, action, reason}' || cat) || true
if [ -t 1 ] && [ -t 0 ]; then
  exec .venv/bin/unidesk --workspace "$workspace"
fi
echo "(no terminal: the console would open here: .venv/bin/unidesk --workspace $workspace)"
