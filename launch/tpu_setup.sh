#!/usr/bin/env bash
# Create (or reuse) a Cloud TPU slice and install this checkout on every worker, without training.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF2
usage: launch/tpu_setup.sh --zone ZONE [options]

Creates the TPU VM NAME (or a queued resource with --queued), or reuses it when READY; a
preempted one is recreated. Then copies this checkout to every worker and installs it with the
tpu extra into ~/tinygsm-venv. launch/tpu_train.sh does this too; use this to prepare a slice
for other commands (verifier_data, eval) run with:
  gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command 'cd ~/tinygsm_jax && ~/tinygsm-venv/bin/python -m ...'

Options:
  --skip-install            only create or reuse the slice
  -h, --help                this help
$COMMON_HELP
EOF2
}

SKIP_INSTALL=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    *)
      parse_common "$@"
      [[ "$CONSUMED" != 0 ]] || die "unknown option '$1' (see --help)"
      shift "$CONSUMED" ;;
  esac
done
finish_common
ensure_tpu
[[ "$SKIP_INSTALL" == 1 ]] || install_project
echo "ready: $NAME ($ACCELERATOR_TYPE, $RUNTIME_VERSION) in $ZONE" >&2
