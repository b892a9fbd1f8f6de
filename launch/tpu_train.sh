#!/usr/bin/env bash
# Train on a Cloud TPU slice: create or reuse it, install this checkout on every worker, run
# `python -m tinygsm_jax.train` on all workers at once, stream the log. Checkpoints and metrics
# live in a gs:// workdir, so after a preemption rerunning the same command resumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
usage: launch/tpu_train.sh --zone ZONE --workdir gs://BUCKET/RUN [options] [-- --config.key=value ...]

Creates (or reuses) the TPU VM NAME, copies this checkout to every worker, installs it with the
tpu extra, then runs on every worker (gcloud compute tpus tpu-vm ssh --worker=all):
  python -m tinygsm_jax.train --config CONFIG --workdir WORKDIR [overrides]
JAX joins the workers into one job by itself; the output of all workers streams here and is
also appended to ~/tinygsm_train.log on each. Preempted (spot) or killed? Rerun the same command:
a preempted VM is recreated and training resumes from the last checkpoint in WORKDIR.

Training options:
  --config FILE             experiment config [configs/phi1_5.py]
  --workdir gs://...        checkpoints, metrics and TensorBoard logs (required; must be on GCS)
  --skip-install            the workers already have this checkout installed
  --detach                  start training in the background on the workers and return;
                            follow with: launch/tpu_train.sh ... --follow
  --follow                  only stream worker 0's log of a detached run
  -h, --help                this help
$COMMON_HELP

Everything after -- is passed to tinygsm_jax.train (e.g. --config.data.path=gs://BUCKET/data).
EOF
}

CONFIG="configs/phi1_5.py"
WORKDIR=""
SKIP_INSTALL=0
DETACH=0
FOLLOW=0
OVERRIDES=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --config) CONFIG="$(value_of "$@")"; shift 2 ;;
    --workdir) WORKDIR="$(value_of "$@")"; shift 2 ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    --detach) DETACH=1; shift ;;
    --follow) FOLLOW=1; shift ;;
    --) shift; OVERRIDES=("$@"); break ;;
    --config.*) OVERRIDES+=("$1"); shift ;;
    *)
      parse_common "$@"
      [[ "$CONSUMED" != 0 ]] || die "unknown option '$1' (see --help)"
      shift "$CONSUMED" ;;
  esac
done

[[ -n "$WORKDIR" ]] || die "--workdir gs://BUCKET/RUN is required (checkpoints must outlive the VM)"
[[ "$WORKDIR" == gs://* ]] || die "--workdir must be a gs:// path (got '$WORKDIR'): a preempted VM loses its disk"
[[ -f "$REPO_ROOT/$CONFIG" || -f "$REPO_ROOT/configs/$CONFIG" || -f "$REPO_ROOT/configs/$CONFIG.py" ]] ||
  die "config not found in this checkout: $CONFIG (the workers get this checkout, so give a path inside it)"
finish_common

# The remote command, quoted once here so that overrides with spaces survive the ssh hop.
train_cmd="cd $REMOTE_DIR && $REMOTE_VENV/bin/python -m tinygsm_jax.train --config $(shquote "$CONFIG") --workdir $(shquote "$WORKDIR")"
train_cmd+="$(shquote_words "${OVERRIDES[@]+"${OVERRIDES[@]}"}")"
run_on_workers "$train_cmd" "$REMOTE_LOG" "training on $NAME ($ACCELERATOR_TYPE) -> $WORKDIR" \
  "$0 --name $NAME --zone $ZONE --workdir $WORKDIR"
