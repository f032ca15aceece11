#!/usr/bin/env bash
# One command as a multi-process JAX run on this machine: PROCESSES copies, each with
# DEVICES CPU devices, joined through JAX's distributed runtime on localhost (gloo collectives).
# This is how the tests exercise multi-host code without a pod.
#
#   bash launch/local_multiprocess.sh [-n PROCESSES] [-d DEVICES] [-p PORT] -- COMMAND...
#   bash launch/local_multiprocess.sh -n 2 -d 4 -- .venv/bin/python -m jaxssl.train \
#       --config configs/vicreg_fashion_mnist.py:smoke --workdir runs/mp
#
# Each copy gets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (read by
# jaxssl.distributed); process i's output goes to stdout/stderr prefixed with "[i]". If one
# copy fails, the others are stopped and the script exits with the failed copy's status.
set -euo pipefail
source "$(dirname "$0")/_cpu.sh"
PROCESSES=2 DEVICES=4 PORT=""
while getopts "n:d:p:" opt; do
  case "$opt" in
    n) PROCESSES="$OPTARG" ;;
    d) DEVICES="$OPTARG" ;;
    p) PORT="$OPTARG" ;;
    *) echo "usage: $0 [-n PROCESSES] [-d DEVICES] [-p PORT] -- COMMAND..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift
if [[ $# -eq 0 ]]; then
  echo "usage: $0 [-n PROCESSES] [-d DEVICES] [-p PORT] -- COMMAND..." >&2
  exit 2
fi
if [[ -z "$PORT" ]]; then  # a port that is free now
  PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')"
fi

pids=()
for ((i = 0; i < PROCESSES; i++)); do
  JAX_COORDINATOR_ADDRESS="localhost:$PORT" JAX_NUM_PROCESSES="$PROCESSES" JAX_PROCESS_ID="$i" \
  JAX_PLATFORMS=cpu XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$DEVICES" \
    "$@" > >(sed -u "s/^/[$i] /") 2> >(sed -u "s/^/[$i] /" >&2) &
  pids+=($!)
done

stop_all() { kill -TERM "${pids[@]}" 2>/dev/null || true; }
trap 'stop_all; wait; exit 130' INT
trap 'stop_all; wait; exit 143' TERM

status=0
# Wait for whichever child ends next until none is left (waiting on a list of pids races
# with bash reaping the ones that ended already: "no such job").
while true; do
  set +e
  wait -n -p done_pid
  code=$?
  set -e
  [[ -n "${done_pid:-}" ]] || break  # no child left
  if [[ $code -ne 0 && $status -eq 0 ]]; then
    status=$code
    echo "local_multiprocess: a process exited with status $code; stopping the others." >&2
    stop_all
  fi
  done_pid=""
done
exit "$status"
