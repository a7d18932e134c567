#!/usr/bin/env bash
# Offline checks of the deployable artefacts (no AWS account, no Docker).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cfn-lint template.yaml
python3 -m json.tool infra/ecs-worker-task.json >/dev/null
bash -n infra/deploy.sh
echo "template.yaml and infra/ are valid"
