#!/usr/bin/env bash
# Pretrain on a Cloud TPU VM pod slice, from your workstation. `setup` gives every worker this
# checkout (the files git tracks; outside a git clone, the tree less .venv and runs) and a venv
# with JAX for TPU; `train` and `evaluate` start the same command on all
# workers at once (JAX finds the workers through the TPU metadata); `stop` sends SIGTERM
# everywhere: the processes stop after one common step with a checkpoint, and `train` with the
# same arguments resumes.
#
#   export TPU_NAME=my-v4-32 ZONE=us-central2-b BUCKET=my-bucket   # PROJECT=... optional
#   bash launch/tpu_pod.sh setup
#   bash launch/tpu_pod.sh train --config configs/vicreg_imagenet.py \
#       --workdir gs://$BUCKET/runs/vicreg_imagenet
#   bash launch/tpu_pod.sh evaluate --workdir gs://$BUCKET/runs/vicreg_imagenet
#   bash launch/tpu_pod.sh stop
#
# The workdir is the bucket itself (checkpoints, metrics, TensorBoard events, the report; the
# workers' service account writes them). Data is read from the bucket too, directly:
#
#   python -m jaxssl.data.pack ~/my_images gs://$BUCKET/data/my_images     # once, anywhere
#   bash launch/tpu_pod.sh train --config configs/vicreg_folder.py \
#       --workdir gs://$BUCKET/runs/mine --config.data.path=gs://$BUCKET/data/my_images
#   DATA_DIR=gs://$BUCKET/tensorflow_datasets bash launch/tpu_pod.sh train \
#       --config configs/vicreg_imagenet.py --workdir gs://$BUCKET/runs/vicreg_imagenet
#
# (a packed folder or a TFDS array_record data dir, read by array_record by range; see
# docs/data.md). By default TFDS data is gs://$BUCKET/tensorflow_datasets mounted read-only
# with gcsfuse at /mnt/$BUCKET on every worker; DATA_DIR=gs://... reads the bucket without
# the mount, DATA_DIR=/local/path a copy on each worker's disk.
# `train` streams every worker's output and ends with the run; DETACH=1 instead leaves the
# run going on the workers, each logging to ~/jaxssl/logs/<command>-<worker>.log there.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TPU_NAME:?set TPU_NAME to the pod slice's name}"
: "${ZONE:?set ZONE to the pod slice's zone}"
: "${BUCKET:?set BUCKET to a gs:// bucket name (without gs://) for data and runs}"
REMOTE=jaxssl
MOUNT="/mnt/$BUCKET"
DATA_DIR="${DATA_DIR:-$MOUNT/tensorflow_datasets}"

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
  cmd="cd $REMOTE && TFDS_DATA_DIR=$DATA_DIR .venv/bin/python -m $module"
  cmd+=" --distributed=on $(printf '%q ' "$@")"
  if [[ -n "${DETACH:-}" ]]; then
    local log="$REMOTE/logs/${module##*.}-\$(hostname).log"
    cmd="mkdir -p $REMOTE/logs && nohup bash -c $(printf '%q' "$cmd") > $log 2>&1 &"
  fi
  on_all_workers "$cmd"
}

case "${1:-}" in
  setup)
    archive="$(mktemp -d)/jaxssl.tar.gz"
    if [[ "$(git rev-parse --show-toplevel 2> /dev/null)" == "$PWD" ]]; then
      git ls-files -z | xargs -0 tar -czf "$archive"  # the files git tracks
    else  # not a git checkout (an unpacked archive): the tree, less what runs here made
      tar -czf "$archive" --exclude=./.git --exclude=./.venv --exclude=./runs \
        --exclude=__pycache__ .
    fi
    gcloud_tpu scp "$archive" "$TPU_NAME:jaxssl.tar.gz" --worker=all
    mount_data=""
    if [[ "$DATA_DIR" == "$MOUNT"/* ]]; then  # the data read through gcsfuse, read-only
      mount_data="
      if ! command -v gcsfuse > /dev/null; then
        curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg |
          sudo gpg --batch --yes --dearmor -o /usr/share/keyrings/cloud.google.gpg
        echo \"deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main\" |
          sudo tee /etc/apt/sources.list.d/gcsfuse.list > /dev/null
        sudo apt-get update -q && sudo apt-get install -y -q gcsfuse
      fi
      sudo mkdir -p $MOUNT && sudo chown \$(id -u):\$(id -g) $MOUNT
      mountpoint -q $MOUNT || gcsfuse --implicit-dirs -o ro $BUCKET $MOUNT"
    fi
    on_all_workers "set -e
      mkdir -p $REMOTE && tar -xzf jaxssl.tar.gz -C $REMOTE && cd $REMOTE
      python3 -m venv .venv && .venv/bin/pip install -q -U 'jax[tpu]' -e .$mount_data"
    ;;
  train) shift; run_everywhere jaxssl.train "$@" ;;
  evaluate) shift; run_everywhere jaxssl.evaluate "$@" ;;
  stop) on_all_workers "pkill -TERM -f '[p]ython -m jaxssl.train' || true" ;;
  *)
    echo "usage: $0 setup | train ARGS... | evaluate ARGS... | stop" >&2
    exit 2
    ;;
esac
