#!/usr/bin/env bash
# Delete the TPU slice (and its queued resource). The gs:// workdir and data are left alone.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF2
usage: launch/tpu_teardown.sh --zone ZONE [--name NAME] [--queued] [--dry-run]

Deletes the TPU VM NAME, or with --queued the queued resource NAME and its VM. Billing stops
when the VM is gone; checkpoints in the gs:// workdir are kept.
$COMMON_HELP
EOF2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    *)
      parse_common "$@"
      [[ "$CONSUMED" != 0 ]] || die "unknown option '$1' (see --help)"
      shift "$CONSUMED" ;;
  esac
done
finish_common
if [[ "$QUEUED" == 1 ]]; then
  run gcloud compute tpus queued-resources delete "$NAME" "${GCLOUD_FLAGS[@]}" --force --quiet
else
  run gcloud compute tpus tpu-vm delete "$NAME" "${GCLOUD_FLAGS[@]}" --quiet
fi
