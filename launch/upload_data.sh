#!/usr/bin/env bash
# Copy local data (a built TFDS dataset, an imported checkpoint, eval sets) to Cloud Storage.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF2
usage: launch/upload_data.sh [--dry-run] LOCAL_DIR gs://BUCKET/PATH

Mirrors LOCAL_DIR to gs://BUCKET/PATH with 'gcloud storage rsync --recursive' (reruns copy only
what changed). Typical uses: the dataset built by 'python -m tinygsm_jax.data build' and the
checkpoint written by 'python -m tinygsm_jax.import_hf'. For data that does not fit on this
machine, build it on a TPU worker or a VM and write to gs:// directly (--out gs://...).
EOF2
}

ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[[ ${#ARGS[@]} == 2 ]] || die "need LOCAL_DIR and gs://DEST (see --help)"
SRC="${ARGS[0]}"
DEST="${ARGS[1]}"
[[ -d "$SRC" ]] || die "$SRC: no such directory"
[[ "$DEST" == gs://* ]] || die "destination must be a gs:// path, got '$DEST'"
ZONE="${ZONE:-none}"  # finish_common wants one; storage has none
finish_common
run gcloud storage rsync --recursive "$SRC" "$DEST"
