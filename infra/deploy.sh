#!/usr/bin/env bash
# Build and deploy the berth stack with AWS SAM. Nothing happens without the `deploy` command.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: infra/deploy.sh deploy     build the Lambda package and deploy the stack berth-$STAGE
       infra/deploy.sh --help     show this and change nothing

  MAIL_FROM="berth <no-reply@example.com>" infra/deploy.sh deploy

Environment:
  STAGE             stage name (default prod); the stack is berth-$STAGE
  MAIL_FROM         sender for account e-mail, a verified SES identity (required)
  OPERATOR_EMAILS   comma-separated operator addresses (default none)
  PUBLIC_URL        base URL clients use, e.g. a custom domain (default none)
  BUILD_COMMIT      default: git HEAD
  GUIDED=1          run `sam deploy --guided` (prompts, may save samconfig.toml)
  SAM_BUILD_ARGS    extra `sam build` arguments; default --use-container, which builds
                    arm64 / python3.12 wheels in SAM's build image (needs Docker)
  WORKER_GPU_IMAGE, TASK_EXECUTION_ROLE_ARN, JOIN_TOKEN_SECRET_ARN
                    when all three are set, also register infra/ecs-worker-task.json
                    with this stack's WorkerTaskRoleArn (needs envsubst)
EOF
}

case "${1:-}" in
  deploy) ;;
  -h | --help | help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
  *) echo "infra/deploy.sh: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

STAGE="${STAGE:-prod}"
STACK="berth-${STAGE}"
: "${MAIL_FROM:?set MAIL_FROM to a verified SES sender, e.g. \"berth <no-reply@example.com>\"}"
OPERATOR_EMAILS="${OPERATOR_EMAILS:-}"
PUBLIC_URL="${PUBLIC_URL:-}"
BUILD_COMMIT="${BUILD_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo dev)}"
read -r -a build_args <<<"${SAM_BUILD_ARGS---use-container}"

# sam build's pip builder reads a requirements file, not pyproject.toml: derive one.
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
python3 - "$workdir/requirements.txt" <<'PY'
import sys, tomllib
with open("pyproject.toml", "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
with open(sys.argv[1], "w") as out:
    out.write("\n".join(deps) + "\n")
PY

sam validate --lint --template template.yaml
sam build --template template.yaml --manifest "$workdir/requirements.txt" "${build_args[@]}"

# Values are quoted for SAM's own parser (MailFrom usually contains spaces).
overrides=(
  "Stage=${STAGE}"
  "MailFrom=\"${MAIL_FROM}\""
  "OperatorEmails=\"${OPERATOR_EMAILS}\""
  "PublicUrl=\"${PUBLIC_URL}\""
  "BuildCommit=${BUILD_COMMIT}"
)
deploy_args=(
  --stack-name "$STACK"
  --resolve-s3
  --capabilities CAPABILITY_IAM
  --no-fail-on-empty-changeset
  --parameter-overrides "${overrides[@]}"
)
if [[ "${GUIDED:-0}" == 1 ]]; then
  sam deploy --guided "${deploy_args[@]}"
else
  sam deploy --no-confirm-changeset "${deploy_args[@]}"
fi

output() {
  aws cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
echo "API:            $(output ApiUrl)"
echo "Worker role:    $(output WorkerTaskRoleArn)"

if [[ -n "${WORKER_GPU_IMAGE:-}" && -n "${TASK_EXECUTION_ROLE_ARN:-}" && -n "${JOIN_TOKEN_SECRET_ARN:-}" ]]; then
  # The worker reads its API URL from SSM (see infra/ecs-worker-task.json).
  aws ssm put-parameter --name "/berth/${STAGE}/api-url" --type String --overwrite \
    --value "${PUBLIC_URL:-$(output ApiUrl)}" >/dev/null
  WORKER_TASK_ROLE_ARN="$(output WorkerTaskRoleArn)"
  AWS_REGION="${AWS_REGION:-$(aws configure get region)}"
  AWS_ACCOUNT_ID="$(aws sts get-caller-identity --query Account --output text)"
  export STAGE WORKER_TASK_ROLE_ARN AWS_REGION AWS_ACCOUNT_ID \
    WORKER_GPU_IMAGE TASK_EXECUTION_ROLE_ARN JOIN_TOKEN_SECRET_ARN
  # shellcheck disable=SC2016  # the list names the variables envsubst may replace
  envsubst '${STAGE} ${WORKER_TASK_ROLE_ARN} ${TASK_EXECUTION_ROLE_ARN} ${WORKER_GPU_IMAGE} ${AWS_REGION} ${AWS_ACCOUNT_ID} ${JOIN_TOKEN_SECRET_ARN}' \
    <infra/ecs-worker-task.json >"$workdir/task.json"
  aws ecs register-task-definition --cli-input-json "file://$workdir/task.json" \
    --query taskDefinition.taskDefinitionArn --output text
fi
