#!/usr/bin/env bash
# Deploys one build of the JadeTrade engine to the ECS stack in infrastructure/terraform:
# builds the image (linux/amd64) and pushes it to ECR, registers new task definition
# revisions for api, worker and migrate, runs the migrations as a one-off Fargate task, rolls
# both services onto the new revisions, and rolls them back if the rollout fails.
# Run with --help for the options; docs/runbooks/deployment.md explains when to use which.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"

usage() {
  cat <<'EOF'
Usage: infrastructure/scripts/deploy.sh [options]

Build, push, migrate, roll out; roll back on failure. Values not given as options or
environment variables are read from `terraform output` in --tf-dir.

Options (environment variable in brackets):
  --region REGION           AWS region [AWS_REGION]; default: taken from the ECR URL
  --cluster NAME            ECS cluster [ECS_CLUSTER]; output ecs_cluster_name
  --api-service NAME        API service [API_SERVICE]; output api_service_name
  --worker-service NAME     worker service [WORKER_SERVICE]; output worker_service_name
  --ecr-repo URL            repository URL [ECR_REPOSITORY_URL]; output ecr_repository_url
  --image-tag TAG           image tag [IMAGE_TAG]; default: short git commit of the checkout
  --api-family NAME         task definition families [API_FAMILY, WORKER_FAMILY,
  --worker-family NAME        MIGRATE_FAMILY]; output task_definition_families
  --migrate-family NAME
  --subnets IDS             comma-separated subnets for the migration task
                            [MIGRATION_SUBNETS]; output migration_network_configuration
  --security-groups IDS     comma-separated security groups for the migration task
                            [MIGRATION_SECURITY_GROUPS]; same output
  --tf-dir DIR              Terraform directory [TF_DIR]; default infrastructure/terraform
  --no-terraform            never call terraform; every value must be given
  --dockerfile FILE         [DOCKERFILE]; default bot-engine/Dockerfile
  --context DIR             build context [DOCKER_CONTEXT]; default the Dockerfile's folder
  --timeout SECONDS         wait this long for the services to be stable [DEPLOY_TIMEOUT];
                            default 900
  --migration-timeout SECONDS
                            wait this long for the migration task [MIGRATION_TIMEOUT];
                            default 900
  --skip-build              deploy a tag already in ECR (config rollouts, redeploys)
  --push-only               build and push the image, change nothing in ECS
  --skip-migrations         do not run `jadetrade db upgrade` before the rollout
  --dry-run                 print the AWS and Docker commands instead of running them
  -h, --help                show this help

Exit status: 0 deployed; 1 failed (a failed rollout has been rolled back; a failed
migration leaves the services untouched); 2 bad usage or missing configuration.
EOF
}

die() {
  printf 'deploy.sh: %s\n' "$*" >&2
  exit "${2:-1}"
}
usage_error() {
  printf 'deploy.sh: %s (see --help)\n' "$*" >&2
  exit 2
}
log() { printf '==> %s\n' "$*" >&2; }

# ------------------------------------------------------------------------- settings
REGION="${AWS_REGION:-}"
CLUSTER="${ECS_CLUSTER:-}"
API_SERVICE="${API_SERVICE:-}"
WORKER_SERVICE="${WORKER_SERVICE:-}"
ECR_REPO="${ECR_REPOSITORY_URL:-}"
IMAGE_TAG="${IMAGE_TAG:-}"
API_FAMILY="${API_FAMILY:-}"
WORKER_FAMILY="${WORKER_FAMILY:-}"
MIGRATE_FAMILY="${MIGRATE_FAMILY:-}"
SUBNETS="${MIGRATION_SUBNETS:-}"
SECURITY_GROUPS="${MIGRATION_SECURITY_GROUPS:-}"
TF_DIR="${TF_DIR:-${REPO_ROOT}/infrastructure/terraform}"
DOCKERFILE="${DOCKERFILE:-${REPO_ROOT}/bot-engine/Dockerfile}"
DOCKER_CONTEXT="${DOCKER_CONTEXT:-}"
TIMEOUT="${DEPLOY_TIMEOUT:-900}"
MIGRATION_TIMEOUT="${MIGRATION_TIMEOUT:-900}"
USE_TERRAFORM=1
DRY_RUN=0
SKIP_BUILD=0
PUSH_ONLY=0
SKIP_MIGRATIONS=0

need_value() {
  [[ $# -ge 2 && -n "$2" ]] || usage_error "$1 needs a value"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --region) need_value "$@"; REGION="$2"; shift 2 ;;
    --cluster) need_value "$@"; CLUSTER="$2"; shift 2 ;;
    --api-service) need_value "$@"; API_SERVICE="$2"; shift 2 ;;
    --worker-service) need_value "$@"; WORKER_SERVICE="$2"; shift 2 ;;
    --ecr-repo) need_value "$@"; ECR_REPO="$2"; shift 2 ;;
    --image-tag) need_value "$@"; IMAGE_TAG="$2"; shift 2 ;;
    --api-family) need_value "$@"; API_FAMILY="$2"; shift 2 ;;
    --worker-family) need_value "$@"; WORKER_FAMILY="$2"; shift 2 ;;
    --migrate-family) need_value "$@"; MIGRATE_FAMILY="$2"; shift 2 ;;
    --subnets) need_value "$@"; SUBNETS="$2"; shift 2 ;;
    --security-groups) need_value "$@"; SECURITY_GROUPS="$2"; shift 2 ;;
    --tf-dir) need_value "$@"; TF_DIR="$2"; shift 2 ;;
    --no-terraform) USE_TERRAFORM=0; shift ;;
    --dockerfile) need_value "$@"; DOCKERFILE="$2"; shift 2 ;;
    --context) need_value "$@"; DOCKER_CONTEXT="$2"; shift 2 ;;
    --timeout) need_value "$@"; TIMEOUT="$2"; shift 2 ;;
    --migration-timeout) need_value "$@"; MIGRATION_TIMEOUT="$2"; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --push-only) PUSH_ONLY=1; shift ;;
    --skip-migrations) SKIP_MIGRATIONS=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done

[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || usage_error "--timeout must be a number of seconds"
[[ "$MIGRATION_TIMEOUT" =~ ^[0-9]+$ ]] || usage_error "--migration-timeout must be a number of seconds"
(( SKIP_BUILD && PUSH_ONLY )) && usage_error "--skip-build and --push-only exclude each other"

command -v jq >/dev/null 2>&1 || die "jq is required" 2

# Fill what is still missing from the stack's outputs.
from_terraform() {
  local outputs
  command -v terraform >/dev/null 2>&1 || return 0
  [[ -d "$TF_DIR" ]] || return 0
  log "reading terraform outputs in ${TF_DIR}"
  if ! outputs="$(terraform -chdir="$TF_DIR" output -json 2>/dev/null)"; then
    log "terraform output failed (not initialised?); give the values as options instead"
    return 0
  fi
  out() { jq -r "$1 // empty" <<<"$outputs"; }
  [[ -n "$CLUSTER" ]] || CLUSTER="$(out '.ecs_cluster_name.value')"
  [[ -n "$API_SERVICE" ]] || API_SERVICE="$(out '.api_service_name.value')"
  [[ -n "$WORKER_SERVICE" ]] || WORKER_SERVICE="$(out '.worker_service_name.value')"
  [[ -n "$ECR_REPO" ]] || ECR_REPO="$(out '.ecr_repository_url.value')"
  [[ -n "$API_FAMILY" ]] || API_FAMILY="$(out '.task_definition_families.value.api')"
  [[ -n "$WORKER_FAMILY" ]] || WORKER_FAMILY="$(out '.task_definition_families.value.worker')"
  [[ -n "$MIGRATE_FAMILY" ]] || MIGRATE_FAMILY="$(out '.task_definition_families.value.migrate')"
  [[ -n "$SUBNETS" ]] || SUBNETS="$(out '(.migration_network_configuration.value.awsvpcConfiguration.subnets // []) | join(",")')"
  [[ -n "$SECURITY_GROUPS" ]] || SECURITY_GROUPS="$(out '(.migration_network_configuration.value.awsvpcConfiguration.securityGroups // []) | join(",")')"
}

if (( USE_TERRAFORM )) && [[ -z "$CLUSTER" || -z "$API_SERVICE" || -z "$WORKER_SERVICE" || -z "$ECR_REPO" \
  || -z "$API_FAMILY" || -z "$WORKER_FAMILY" || -z "$MIGRATE_FAMILY" || -z "$SUBNETS" || -z "$SECURITY_GROUPS" ]]; then
  from_terraform
fi

# 123456789012.dkr.ecr.eu-west-1.amazonaws.com/jadetrade/bot-engine -> eu-west-1
if [[ -z "$REGION" && "$ECR_REPO" =~ \.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com ]]; then
  REGION="${BASH_REMATCH[1]}"
fi

if [[ -z "$IMAGE_TAG" ]]; then
  command -v git >/dev/null 2>&1 || usage_error "git is not available; give --image-tag"
  IMAGE_TAG="$(git -C "$REPO_ROOT" rev-parse --short=12 HEAD)" || usage_error "not a git checkout; give --image-tag"
  # Tags are immutable and name a commit: a build of uncommitted changes must not carry one.
  if (( ! SKIP_BUILD )) && [[ -n "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no)" ]]; then
    usage_error "the checkout has uncommitted changes; commit them, or give an explicit --image-tag"
  fi
fi
[[ "$IMAGE_TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ && "$IMAGE_TAG" != latest ]] \
  || usage_error "invalid image tag: ${IMAGE_TAG}"

missing=()
[[ -n "$REGION" ]] || missing+=(--region)
[[ -n "$ECR_REPO" ]] || missing+=(--ecr-repo)
if (( ! PUSH_ONLY )); then
  [[ -n "$CLUSTER" ]] || missing+=(--cluster)
  [[ -n "$API_SERVICE" ]] || missing+=(--api-service)
  [[ -n "$WORKER_SERVICE" ]] || missing+=(--worker-service)
  [[ -n "$API_FAMILY" ]] || missing+=(--api-family)
  [[ -n "$WORKER_FAMILY" ]] || missing+=(--worker-family)
  [[ -n "$MIGRATE_FAMILY" ]] || missing+=(--migrate-family)
  if (( ! SKIP_MIGRATIONS )); then
    [[ -n "$SUBNETS" ]] || missing+=(--subnets)
    [[ -n "$SECURITY_GROUPS" ]] || missing+=(--security-groups)
  fi
fi
(( ${#missing[@]} == 0 )) || usage_error "missing configuration: ${missing[*]}"

[[ -n "$DOCKER_CONTEXT" ]] || DOCKER_CONTEXT="$(dirname "$DOCKERFILE")"
IMAGE="${ECR_REPO}:${IMAGE_TAG}"
REGISTRY="${ECR_REPO%%/*}"
REPOSITORY_NAME="${ECR_REPO#*/}"

if (( ! DRY_RUN )); then
  command -v aws >/dev/null 2>&1 || die "the AWS CLI is required" 2
  if (( ! SKIP_BUILD )); then
    command -v docker >/dev/null 2>&1 || die "docker (with buildx) is required" 2
  fi
fi

# ------------------------------------------------------------------------- helpers
# Print a command as it would run (shell-quoted).
show() {
  local word
  printf '+' >&2
  for word in "$@"; do printf ' %q' "$word" >&2; done
  printf '\n' >&2
}

# Run a command, or only print it under --dry-run.
run() {
  show "$@"
  (( DRY_RUN )) || "$@"
}

awsr() { aws --region "$REGION" "$@"; }

# Run a command for at most $1 seconds where `timeout` exists (GNU coreutils).
with_timeout() {
  local seconds="$1"
  shift
  if command -v timeout >/dev/null 2>&1; then
    timeout "$seconds" "$@"
  else
    "$@"
  fi
}

image_in_ecr() {
  awsr ecr describe-images --repository-name "$REPOSITORY_NAME" \
    --image-ids "imageTag=${IMAGE_TAG}" >/dev/null 2>&1
}

# ------------------------------------------------------------------------- steps
build_and_push() {
  if (( ! DRY_RUN )) && image_in_ecr; then
    log "image ${IMAGE} is already in ECR (tags are immutable); not rebuilding"
    return 0
  fi
  log "building ${IMAGE} (linux/amd64)"
  printf '+ aws --region %q ecr get-login-password | docker login --username AWS --password-stdin %q\n' \
    "$REGION" "$REGISTRY" >&2
  if (( ! DRY_RUN )); then
    awsr ecr get-login-password | docker login --username AWS --password-stdin "$REGISTRY" >/dev/null
  fi
  run docker buildx build --platform linux/amd64 --provenance=false \
    --file "$DOCKERFILE" --tag "$IMAGE" \
    --label "org.opencontainers.image.revision=${IMAGE_TAG}" \
    --push "$DOCKER_CONTEXT"
}

# Register a copy of the newest revision of family $1 with container $2 running $IMAGE;
# print the new revision's ARN.
register_revision() {
  local family="$1" container="$2" described definition file arn
  if (( DRY_RUN )); then
    show aws --region "$REGION" ecs describe-task-definition --task-definition "$family" --include TAGS
    show aws --region "$REGION" ecs register-task-definition --cli-input-json "file://${family}.json"
    printf 'arn:aws:ecs:%s:ACCOUNT_ID:task-definition/%s:NEXT\n' "$REGION" "$family"
    return 0
  fi
  described="$(awsr ecs describe-task-definition --task-definition "$family" --include TAGS --output json)"
  jq -e --arg name "$container" '.taskDefinition.containerDefinitions | any(.name == $name)' \
    <<<"$described" >/dev/null || die "task definition ${family} has no container named ${container}"
  # Keep everything but the image, and drop what describe returns but register refuses.
  definition="$(jq --arg name "$container" --arg image "$IMAGE" '
    (.tags // []) as $tags
    | .taskDefinition
    | .containerDefinitions |= map(if .name == $name then .image = $image else . end)
    | del(.taskDefinitionArn, .revision, .status, .requiresAttributes, .compatibilities,
          .registeredAt, .registeredBy, .deregisteredAt)
    | if ($tags | length) > 0 then .tags = $tags else . end' <<<"$described")"
  file="$(mktemp)"
  printf '%s\n' "$definition" >"$file"
  arn="$(awsr ecs register-task-definition --cli-input-json "file://${file}" \
    --query 'taskDefinition.taskDefinitionArn' --output text)" || { rm -f "$file"; die "registering ${family} failed"; }
  rm -f "$file"
  printf '%s\n' "$arn"
}

run_migration() {
  local task_definition="$1" network started task deadline status exit_code stop_code reason
  network="$(jq -cn --arg subnets "$SUBNETS" --arg groups "$SECURITY_GROUPS" '{awsvpcConfiguration: {
    subnets: ($subnets | split(",")), securityGroups: ($groups | split(",")), assignPublicIp: "DISABLED"}}')"
  log "running the migrations (jadetrade db upgrade) with ${task_definition}"
  if (( DRY_RUN )); then
    show aws --region "$REGION" ecs run-task --cluster "$CLUSTER" --task-definition "$task_definition" \
      --launch-type FARGATE --platform-version LATEST --count 1 --started-by deploy.sh \
      --network-configuration "$network"
    show aws --region "$REGION" ecs describe-tasks --cluster "$CLUSTER" --tasks MIGRATION_TASK_ARN
    return 0
  fi
  started="$(awsr ecs run-task --cluster "$CLUSTER" --task-definition "$task_definition" \
    --launch-type FARGATE --platform-version LATEST --count 1 --started-by deploy.sh \
    --network-configuration "$network" --output json)"
  task="$(jq -r '.tasks[0].taskArn // empty' <<<"$started")"
  [[ -n "$task" ]] || die "the migration task did not start: $(jq -c '.failures' <<<"$started")"
  log "migration task ${task}"

  deadline=$((SECONDS + MIGRATION_TIMEOUT))
  while :; do
    status="$(awsr ecs describe-tasks --cluster "$CLUSTER" --tasks "$task" \
      --query 'tasks[0].lastStatus' --output text)"
    [[ "$status" == STOPPED ]] && break
    if (( SECONDS >= deadline )); then
      awsr ecs stop-task --cluster "$CLUSTER" --task "$task" --reason "deploy.sh: migration timed out" >/dev/null || true
      die "the migration did not finish within ${MIGRATION_TIMEOUT}s (stopped it); services untouched"
    fi
    sleep 10
  done

  read -r exit_code stop_code reason < <(awsr ecs describe-tasks --cluster "$CLUSTER" --tasks "$task" \
    --query "tasks[0].[containers[?name=='migrate'] | [0].exitCode, stopCode, stoppedReason]" --output text)
  if [[ "$exit_code" != 0 ]]; then
    die "the migration failed (exit code ${exit_code}, ${stop_code}: ${reason}); services untouched. Its log is in the migrate log group, stream migrate/migrate/${task##*/}"
  fi
  log "migrations done"
}

current_revision() {
  awsr ecs describe-services --cluster "$CLUSTER" --services "$1" \
    --query 'services[0].taskDefinition' --output text
}

update_service() {
  run aws --region "$REGION" ecs update-service --cluster "$CLUSTER" --service "$1" \
    --task-definition "$2" --query 'service.serviceName' --output text >/dev/null
}

# Wait (at most $TIMEOUT s) until the services are stable. The CLI waiter gives up after
# 10 minutes, so it is started again while time remains.
wait_stable() {
  local deadline=$((SECONDS + TIMEOUT)) remaining
  show aws --region "$REGION" ecs wait services-stable --cluster "$CLUSTER" --services "$@"
  (( DRY_RUN )) && return 0
  while :; do
    remaining=$((deadline - SECONDS))
    (( remaining > 0 )) || return 1
    if with_timeout "$remaining" aws --region "$REGION" ecs wait services-stable \
      --cluster "$CLUSTER" --services "$@"; then
      return 0
    fi
    rollout_failed "$@" && return 1
  done
}

# True when a service's newest deployment has failed (the circuit breaker tripped).
rollout_failed() {
  local service state
  for service in "$@"; do
    state="$(awsr ecs describe-services --cluster "$CLUSTER" --services "$service" \
      --query 'services[0].deployments[0].rolloutState' --output text)"
    [[ "$state" == FAILED ]] && return 0
  done
  return 1
}

# Succeed when service $1's primary deployment runs $2 and has completed.
check_rollout() {
  local service="$1" expected="$2" deadline=$((SECONDS + 120)) running state reason
  show aws --region "$REGION" ecs describe-services --cluster "$CLUSTER" --services "$service"
  (( DRY_RUN )) && return 0
  while :; do
    IFS=$'\t' read -r running state reason < <(awsr ecs describe-services --cluster "$CLUSTER" \
      --services "$service" --output text \
      --query "services[0].deployments[?status=='PRIMARY'] | [0].[taskDefinition, rolloutState, rolloutStateReason]")
    if [[ "$running" != "$expected" ]]; then
      log "${service}: now runs ${running}, not ${expected} (rolled back by ECS: ${reason})"
      return 1
    fi
    case "$state" in
      COMPLETED) log "${service}: rollout completed"; return 0 ;;
      FAILED) log "${service}: rollout failed: ${reason}"; return 1 ;;
    esac
    (( SECONDS < deadline )) || { log "${service}: rollout still ${state}"; return 1; }
    sleep 10
  done
}

PREVIOUS_API=""
PREVIOUS_WORKER=""
ROLLING=0

roll_back() {
  trap - EXIT INT TERM
  log "rolling back: ${API_SERVICE} -> ${PREVIOUS_API}, ${WORKER_SERVICE} -> ${PREVIOUS_WORKER}"
  update_service "$API_SERVICE" "$PREVIOUS_API" || log "could not roll back ${API_SERVICE}"
  update_service "$WORKER_SERVICE" "$PREVIOUS_WORKER" || log "could not roll back ${WORKER_SERVICE}"
  if wait_stable "$API_SERVICE" "$WORKER_SERVICE"; then
    log "rolled back; the services run their previous revisions"
  else
    log "the rollback has not settled within ${TIMEOUT}s; check the services in the ECS console"
  fi
  die "deployment of ${IMAGE_TAG} failed"
}

on_exit() {
  local status=$?
  if (( ROLLING )) && (( status != 0 )); then
    roll_back
  fi
}

# ------------------------------------------------------------------------- main
(( DRY_RUN )) && log "dry run: nothing is changed"

if (( SKIP_BUILD )); then
  if (( ! DRY_RUN )); then
    image_in_ecr || die "image ${IMAGE} is not in ECR; build it first (drop --skip-build)"
  fi
  log "using ${IMAGE}"
else
  build_and_push
fi
if (( PUSH_ONLY )); then
  log "pushed ${IMAGE}"
  exit 0
fi

log "registering task definitions for ${IMAGE}"
NEW_API="$(register_revision "$API_FAMILY" api)"
NEW_WORKER="$(register_revision "$WORKER_FAMILY" worker)"
NEW_MIGRATE="$(register_revision "$MIGRATE_FAMILY" migrate)"
log "api ${NEW_API}; worker ${NEW_WORKER}; migrate ${NEW_MIGRATE}"

if (( SKIP_MIGRATIONS )); then
  log "skipping migrations (--skip-migrations)"
else
  run_migration "$NEW_MIGRATE"
fi

if (( DRY_RUN )); then
  show aws --region "$REGION" ecs describe-services --cluster "$CLUSTER" --services "$API_SERVICE" "$WORKER_SERVICE"
  PREVIOUS_API="CURRENT_API_REVISION"
  PREVIOUS_WORKER="CURRENT_WORKER_REVISION"
else
  PREVIOUS_API="$(current_revision "$API_SERVICE")"
  PREVIOUS_WORKER="$(current_revision "$WORKER_SERVICE")"
fi
log "previous revisions: ${PREVIOUS_API}, ${PREVIOUS_WORKER}"

trap on_exit EXIT
trap 'exit 130' INT TERM
ROLLING=1
log "rolling out"
update_service "$API_SERVICE" "$NEW_API"
update_service "$WORKER_SERVICE" "$NEW_WORKER"

if ! wait_stable "$API_SERVICE" "$WORKER_SERVICE"; then
  log "the services did not become stable within ${TIMEOUT}s"
  exit 1
fi
check_rollout "$API_SERVICE" "$NEW_API" || exit 1
check_rollout "$WORKER_SERVICE" "$NEW_WORKER" || exit 1
ROLLING=0
trap - EXIT INT TERM

log "deployed ${IMAGE_TAG}: ${API_SERVICE} and ${WORKER_SERVICE} are stable on the new revisions"
