# Shared by the launch/*.sh scripts (sourced, not run): option parsing, dry-run, gcloud steps.
#
# Every gcloud call goes through `run`, so `--dry-run` prints exactly the commands a real run
# would execute (one per line, prefixed with "+ ", shell-quoted) and touches nothing.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

NAME="${TPU_NAME:-tinygsm}"
ZONE="${TPU_ZONE:-}"
PROJECT="${TPU_PROJECT:-}"
ACCELERATOR_TYPE="${TPU_ACCELERATOR_TYPE_NAME:-v5litepod-16}"
RUNTIME_VERSION=""
QUEUED=0
SPOT=0
DRY_RUN=0
REMOTE_DIR='$HOME/tinygsm_jax'  # (expanded on the worker) where the project lives on every worker
REMOTE_VENV='$HOME/tinygsm-venv' # its Python environment (Python 3.11, the tpu extra)
REMOTE_LOG='$HOME/tinygsm_train.log'

die() {
  echo "error: $*" >&2
  exit 2
}

# Parse one shared option from "$@", setting CONSUMED to how many arguments it took (0 = not ours).
parse_common() {
  CONSUMED=0
  case "$1" in
    --name | --zone | --project | --accelerator-type | --runtime-version)
      [[ $# -ge 2 ]] || die "$1 needs a value"
      case "$1" in
        --name) NAME="$2" ;;
        --zone) ZONE="$2" ;;
        --project) PROJECT="$2" ;;
        --accelerator-type) ACCELERATOR_TYPE="$2" ;;
        --runtime-version) RUNTIME_VERSION="$2" ;;
      esac
      CONSUMED=2 ;;
    --queued) QUEUED=1; CONSUMED=1 ;;
    --spot) SPOT=1; CONSUMED=1 ;;
    --dry-run) DRY_RUN=1; CONSUMED=1 ;;
  esac
}

# Value of option "$1" from "$2", or die when missing.
value_of() {
  [[ $# -ge 2 ]] || die "$1 needs a value"
  printf '%s' "$2"
}

COMMON_HELP="Cloud TPU options (defaults from TPU_NAME, TPU_ZONE, TPU_PROJECT):
  --name NAME               TPU VM (and queued resource) name [tinygsm]
  --zone ZONE               e.g. us-central2-b (v4), us-west4-a (v5e), us-east5-a (v5p), us-east1-d (v6e)
  --project PROJECT         Google Cloud project (default: gcloud's configured one)
  --accelerator-type TYPE   v4-32, v5litepod-16, v5p-16, v6e-16, ... [v5litepod-16]
  --runtime-version VER     TPU VM image (default: chosen from the accelerator type)
  --queued                  request the slice as a queued resource (waits for capacity)
  --spot                    spot (preemptible) capacity: cheaper; rerun the command after a preemption
  --dry-run                 print every command instead of running it (gcloud not needed)"

# Image per generation, as the Cloud TPU docs recommend for JAX.
default_runtime_version() {
  case "$ACCELERATOR_TYPE" in
    v4-*) echo "tpu-ubuntu2204-base" ;;
    v5litepod-* | v5e-*) echo "v2-alpha-tpuv5-lite" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    *) die "unknown --accelerator-type '$ACCELERATOR_TYPE' (v4-N, v5litepod-N, v5p-N, v6e-N); pass --runtime-version too if it is right" ;;
  esac
}

finish_common() {
  [[ -n "$ZONE" ]] || die "--zone is required (or set TPU_ZONE)"
  [[ "$ACCELERATOR_TYPE" == v5e-* ]] && ACCELERATOR_TYPE="v5litepod-${ACCELERATOR_TYPE#v5e-}"
  [[ -n "$RUNTIME_VERSION" ]] || RUNTIME_VERSION="$(default_runtime_version)"
  if [[ "$DRY_RUN" == 0 ]] && ! command -v gcloud >/dev/null 2>&1; then
    echo "error: gcloud not found on PATH. Install the Google Cloud CLI (see the 'Install the gcloud CLI'" \
      "page of the Google Cloud docs, or 'apt-get install google-cloud-cli' from Google's apt repository)," \
      "then run 'gcloud auth login' and 'gcloud config set project PROJECT'; or add --dry-run to only print the commands." >&2
    exit 127
  fi
  GCLOUD_FLAGS=(--zone "$ZONE")
  [[ -n "$PROJECT" ]] && GCLOUD_FLAGS+=(--project "$PROJECT")
  return 0
}

# One argument, quoted for a POSIX shell only when it needs to be ('it'\''s').
shquote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# The words quoted and joined with leading spaces: appended to a remote command, they survive
# the ssh hop as the words they were.
shquote_words() {
  local a
  for a in "$@"; do printf ' %s' "$(shquote "$a")"; done
}

# Run a command, or print it (quoted, prefixed with "+") under --dry-run.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '+%s\n' "$(shquote_words "$@")"
  else
    "$@"
  fi
}

# Set STATE to the command's output (empty when it fails: the resource does not exist).
# Under --dry-run the command is printed and STATE is empty, so the dry run shows a fresh start.
get_state() {
  STATE=""
  if [[ "$DRY_RUN" == 1 ]]; then
    run "$@"
  else
    STATE="$("$@" 2>/dev/null || true)"
  fi
}

ssh_all() {
  run gcloud compute tpus tpu-vm ssh "$NAME" "${GCLOUD_FLAGS[@]}" --worker=all --command "$1"
}

# The last step of tpu_train.sh and tpu_run.sh: with --follow, tail worker 0's LOG; otherwise
# bring the slice up, install this checkout (unless --skip-install) and run REMOTE_CMD on every
# worker, appending to LOG, in the foreground or (--detach) in the background.
# Usage: run_on_workers REMOTE_CMD LOG WHAT FOLLOW_HINT (WHAT is echoed before it starts;
# FOLLOW_HINT is the command line that, with --follow, shows the log again).
run_on_workers() {
  local remote_cmd="$1" log="$2" what="$3" follow_hint="$4"
  if [[ "$FOLLOW" == 1 ]]; then
    run gcloud compute tpus tpu-vm ssh "$NAME" "${GCLOUD_FLAGS[@]}" --worker=0 --command "tail -n 100 -F $log"
    return 0
  fi
  ensure_tpu
  [[ "$SKIP_INSTALL" == 1 ]] || install_project
  echo "$what" >&2
  if [[ "$DETACH" == 1 ]]; then
    ssh_all "nohup bash -c $(shquote "$remote_cmd >> $log 2>&1") > /dev/null 2>&1 &"
    echo "started in the background; follow with: $follow_hint --follow" >&2
  else
    ssh_all "set -o pipefail; $remote_cmd 2>&1 | tee -a $log"
  fi
}

# Create the slice, or reuse it when it is up; a preempted/failed one is deleted and recreated.
ensure_tpu() {
  local state
  if [[ "$QUEUED" == 1 ]]; then
    get_state gcloud compute tpus queued-resources describe "$NAME" "${GCLOUD_FLAGS[@]}" --format='value(state.state)'
    state="$STATE"
    case "$state" in
      ACTIVE) echo "reusing queued resource $NAME (ACTIVE)" >&2; return 0 ;;
      SUSPENDED | FAILED | SUSPENDING)
        echo "queued resource $NAME is $state: deleting and requesting it again" >&2
        run gcloud compute tpus queued-resources delete "$NAME" "${GCLOUD_FLAGS[@]}" --force --quiet ;;
      "") ;;
      *) echo "queued resource $NAME is $state: waiting" >&2 ;;
    esac
    if [[ -z "$state" || "$state" == SUSPENDED || "$state" == FAILED || "$state" == SUSPENDING ]]; then
      local extra=()
      [[ "$SPOT" == 1 ]] && extra+=(--spot)
      run gcloud compute tpus queued-resources create "$NAME" "${GCLOUD_FLAGS[@]}" --node-id "$NAME" \
        --accelerator-type "$ACCELERATOR_TYPE" --runtime-version "$RUNTIME_VERSION" "${extra[@]}"
    fi
    if [[ "$DRY_RUN" == 0 ]]; then
      while :; do
        get_state gcloud compute tpus queued-resources describe "$NAME" "${GCLOUD_FLAGS[@]}" --format='value(state.state)'
        state="$STATE"
        [[ "$state" == ACTIVE ]] && break
        [[ "$state" == FAILED || "$state" == SUSPENDED ]] && die "queued resource $NAME is $state"
        echo "queued resource $NAME: ${state:-unknown}; checking again in 60 s" >&2
        sleep 60
      done
    fi
    return 0
  fi
  get_state gcloud compute tpus tpu-vm describe "$NAME" "${GCLOUD_FLAGS[@]}" --format='value(state)'
  state="$STATE"
  case "$state" in
    READY) echo "reusing TPU VM $NAME (READY)" >&2; return 0 ;;
    "") ;;
    PREEMPTED | TERMINATED | STOPPED)
      echo "TPU VM $NAME is $state: deleting and creating it again (checkpoints in the workdir survive)" >&2
      run gcloud compute tpus tpu-vm delete "$NAME" "${GCLOUD_FLAGS[@]}" --quiet ;;
    *) die "TPU VM $NAME is $state; wait for it or delete it with launch/tpu_teardown.sh" ;;
  esac
  local extra=()
  [[ "$SPOT" == 1 ]] && extra+=(--spot)
  run gcloud compute tpus tpu-vm create "$NAME" "${GCLOUD_FLAGS[@]}" \
    --accelerator-type "$ACCELERATOR_TYPE" --version "$RUNTIME_VERSION" "${extra[@]}"
}

# Copy this checkout (tracked and untracked-but-not-ignored files) to every worker and install it.
install_project() {
  local tarball tmpdir=""
  if [[ "$DRY_RUN" == 1 ]]; then
    tarball="TMPDIR/tinygsm_jax.tar.gz"
  else
    tmpdir="$(mktemp -d)"
    tarball="$tmpdir/tinygsm_jax.tar.gz"
  fi
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "+ (cd $(shquote "$REPO_ROOT") && git ls-files -co --exclude-standard | tar -czf $tarball -T -)"
  elif git -C "$REPO_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$REPO_ROOT" && git ls-files -co --exclude-standard | tar -czf "$tarball" -T -)
  else
    tar -czf "$tarball" -C "$REPO_ROOT" --exclude=.venv --exclude=.git --exclude=__pycache__ .
  fi
  run gcloud compute tpus tpu-vm scp "$tarball" "$NAME:~/tinygsm_jax.tar.gz" "${GCLOUD_FLAGS[@]}" --worker=all
  # The TPU images ship Python 3.10; jax needs 3.11+, so uv provides the interpreter.
  ssh_all "set -e; rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf ~/tinygsm_jax.tar.gz -C $REMOTE_DIR \
&& python3 -m pip install -q --user --upgrade uv \
&& ~/.local/bin/uv venv -q --allow-existing --python 3.11 $REMOTE_VENV \
&& ~/.local/bin/uv pip install -q --python $REMOTE_VENV/bin/python -e \"$REMOTE_DIR[tpu]\" \
&& $REMOTE_VENV/bin/python -c 'import jax, tinygsm_jax; print(\"installed, jax\", jax.__version__)'"
  [[ -z "$tmpdir" ]] || rm -rf "$tmpdir"
}
