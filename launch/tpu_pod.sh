#!/usr/bin/env bash
# Pretrain on a Cloud TPU VM pod slice, from your workstation. `setup` gives every worker this
# checkout, a venv with JAX for TPU, and the bucket mounted with gcsfuse at /mnt/$BUCKET (the
# workdir and TFDS data live there, seen by all workers); `train` and `evaluate` start the same
# command on all workers at once (JAX finds the workers through the TPU metadata); `stop`
# sends SIGTERM everywhere: the processes stop after one common step with a checkpoint, and
# `train` with the same arguments resumes.
#
#   export TPU_NAME=my-v4-32 ZONE=us-central2-b BUCKET=my-bucket   # PROJECT=... optional
#   bash launch/tpu_pod.sh setup
#   bash launch/tpu_pod.sh train --config configs/vicreg_imagenet.py \
#       --workdir /mnt/$BUCKET/runs/vicreg_imagenet
#   bash launch/tpu_pod.sh evaluate --workdir /mnt/$BUCKET/runs/vicreg_imagenet
#   bash launch/tpu_pod.sh stop
#
# `train` streams every worker's output and ends with the run; DETACH=1 instead leaves the
# run going on the workers, each logging to /mnt/$BUCKET/logs/<run>-<worker>.log.
# TFDS datasets are read from /mnt/$BUCKET/tensorflow_datasets (TFDS_DATA_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TPU_NAME:?set TPU_NAME to the pod slice's name}"
: "${ZONE:?set ZONE to the pod slice's zone}"
: "${BUCKET:?set BUCKET to a gs:// bucket name (without gs://) for data and runs}"
REMOTE=jaxssl
MOUNT="/mnt/$BUCKET"

gcloud_tpu() {
  local verb="$1"
  shift
  gcloud compute tpus tpu-vm "$verb" --zone="$ZONE" ${PROJECT:+--project="$PROJECT"} "$@"
}
on_all_workers() {
  gcloud_tpu ssh "$TPU_NAME" --worker=all --command="$1"
}
run_everywhere() {  # run_everywhere MODULE ARGS...: the same jaxssl command on every worker
  local module="$1"
  shift
  local cmd
  cmd="cd $REMOTE && TFDS_DATA_DIR=$MOUNT/tensorflow_datasets .venv/bin/python -m $module"
  cmd+=" --distributed=on $(printf '%q ' "$@")"
  if [[ -n "${DETACH:-}" ]]; then
    local log="$MOUNT/logs/${module##*.}-\$(hostname).log"
    cmd="mkdir -p $MOUNT/logs && nohup bash -c $(printf '%q' "$cmd") > $log 2>&1 &"
  fi
  on_all_workers "$cmd"
}

case "${1:-}" in
  setup)
    archive="$(mktemp -d)/jaxssl.tar.gz"
    git ls-files -z | xargs -0 tar -czf "$archive"
    gcloud_tpu scp "$archive" "$TPU_NAME:jaxssl.tar.gz" --worker=all
    on_all_workers "set -e
      mkdir -p $REMOTE && tar -xzf jaxssl.tar.gz -C $REMOTE && cd $REMOTE
      python3 -m venv .venv && .venv/bin/pip install -q -U 'jax[tpu]' -e .
      if ! command -v gcsfuse > /dev/null; then
        curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg |
          sudo gpg --batch --yes --dearmor -o /usr/share/keyrings/cloud.google.gpg
        echo \"deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main\" |
          sudo tee /etc/apt/sources.list.d/gcsfuse.list > /dev/null
        sudo apt-get update -q && sudo apt-get install -y -q gcsfuse
      fi
      sudo mkdir -p $MOUNT && sudo chown \$(id -u):\$(id -g) $MOUNT
      mountpoint -q $MOUNT || gcsfuse --implicit-dirs $BUCKET $MOUNT"
    ;;
  train) shift; run_everywhere jaxssl.train "$@" ;;
  evaluate) shift; run_everywhere jaxssl.evaluate "$@" ;;
  stop) on_all_workers "pkill -TERM -f '[p]ython -m jaxssl.train' || true" ;;
  *)
    echo "usage: $0 setup | train ARGS... | evaluate ARGS... | stop" >&2
    exit 2
    ;;
esac
