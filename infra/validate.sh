#!/usr/bin/env bash
# Offline checks of the deployable artefacts (no AWS account, no Docker); deploys nothing.
set -euo pipefail

case "${1:-}" in
  "") ;;
  -h | --help | help)
    echo "usage: infra/validate.sh   lint template.yaml (cfn-lint), the ECS task definition and deploy.sh; changes nothing"
    exit 0 ;;
  *) echo "infra/validate.sh: takes no arguments (--help to see what it does)" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cfn-lint template.yaml
python3 -m json.tool infra/ecs-worker-task.json >/dev/null
bash -n infra/deploy.sh
echo "template.yaml and infra/ are valid"
