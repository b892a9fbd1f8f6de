#!/usr/bin/env bash
# Run any tinygsm_jax command on every worker of a Cloud TPU slice at once (sampling, eval,
# verifier data, AOT, ...): create or reuse the slice, install this checkout on every worker,
# run the command on all workers (JAX joins them into one job), stream the output.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
usage: launch/tpu_run.sh --zone ZONE [options] -- python -m tinygsm_jax.MODULE [ARGS ...]

Creates (or reuses) the TPU VM NAME, copies this checkout to every worker, installs it with the
tpu extra, then runs the command on every worker (gcloud compute tpus tpu-vm ssh --worker=all)
in the checkout, with the project's Python. Every worker runs the same command: the multi-host
CLIs (train, eval, verifier_data, sample) join one job by themselves, split the decode over
every chip, and process 0 writes. Outputs (--out, --workdir) must be gs:// paths: the workers'
disks are not shared and go away with the VM. The output of all workers streams here and is
also appended to ~/tinygsm_run.log on each. Rerun the same command after a preemption:
verifier_data resumes from the chunks already in --out.

Examples (the recipe's verifier-data and eval steps):
  launch/tpu_run.sh --zone us-west4-a -- python -m tinygsm_jax.verifier_data \\
      --generator gs://B/gen/checkpoints/1000 gs://B/gen/checkpoints/6000 gs://B/gen/checkpoints/12000 \\
      --questions gsm8k:gs://B/gsm8k/train.jsonl --n 48 --temperatures 0.5,0.7 \\
      --questions-per-batch 16 --out gs://B/vdata
  launch/tpu_run.sh --zone us-west4-a -- python -m tinygsm_jax.eval --generator gs://B/gen \\
      --verifier gs://B/verifier --dataset gsm8k:gs://B/gsm8k/test.jsonl --n 48 --out gs://B/eval

Options:
  --skip-install            the workers already have this checkout installed
  --detach                  start the command in the background on the workers and return;
                            follow with: launch/tpu_run.sh ... --follow
  --follow                  only stream worker 0's log of a detached run
  -h, --help                this help
$COMMON_HELP
EOF
}

SKIP_INSTALL=0
DETACH=0
FOLLOW=0
CMD=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    --detach) DETACH=1; shift ;;
    --follow) FOLLOW=1; shift ;;
    --) shift; CMD=("$@"); break ;;
    *)
      parse_common "$@"
      [[ "$CONSUMED" != 0 ]] || die "unknown option '$1' (see --help)"
      shift "$CONSUMED" ;;
  esac
done

REMOTE_RUN_LOG='$HOME/tinygsm_run.log'
if [[ "$FOLLOW" == 0 ]]; then
  [[ ${#CMD[@]} -ge 3 ]] || die "give the command after --, e.g. -- python -m tinygsm_jax.eval ..."
  if [[ "${CMD[0]}" != python && "${CMD[0]}" != python3 ]] || [[ "${CMD[1]}" != -m || "${CMD[2]}" != tinygsm_jax.* ]]; then
    die "the command must be 'python -m tinygsm_jax.MODULE ...' (got '${CMD[*]:0:3}')"
  fi
  module="${CMD[2]#tinygsm_jax.}"
  [[ "$module" =~ ^[a-z_0-9]+$ && -f "$REPO_ROOT/tinygsm_jax/$module.py" ]] ||
    die "no module tinygsm_jax.$module in this checkout"
  for ((i = 3; i < ${#CMD[@]}; i++)); do
    arg="${CMD[$i]}"
    case "$arg" in
      --out | --workdir) value="${CMD[$((i + 1))]:-}" ;;
      --out=* | --workdir=*) value="${arg#*=}"; arg="${arg%%=*}" ;;
      *) continue ;;
    esac
    [[ "$value" == gs://* ]] ||
      die "$arg must be a gs:// path (got '$value'): the workers' disks are not shared and vanish with the VM"
  done
fi
finish_common

# The remote command, quoted once here so that arguments with spaces survive the ssh hop.
run_cmd="cd $REMOTE_DIR && $REMOTE_VENV/bin/python$(shquote_words "${CMD[@]:1}")"
run_on_workers "$run_cmd" "$REMOTE_RUN_LOG" "running on every worker of $NAME ($ACCELERATOR_TYPE): ${CMD[*]}" \
  "$0 --name $NAME --zone $ZONE"
