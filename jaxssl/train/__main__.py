"""``python -m jaxssl.train --config configs/X.py[:smoke] --workdir DIR [--config.key=value]``.

Exit status: 0 when the run finished; 75 (EX_TEMPFAIL) when SIGTERM or SIGINT stopped it
after a final checkpoint (run the same command to resume; launch/slurm.sbatch requeues on it);
3 when the watchdog found a stalled step (the stacks on stderr; resumable too); 1 with a
one-paragraph message on a bad config, dataset, workdir or checkpoint, non-finite values, or a
multi-process run that cannot start.

Multi-process (pods, clusters, ``launch/local_multiprocess.sh``): every process runs the same
command; ``--coordinator_address``, ``--num_processes``, ``--process_id`` and ``--distributed``
(see ``jaxssl/cli.py``) or the matching environment variables say how they find each other.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxssl import cli
from jaxssl.distributed import is_main_process
from jaxssl.train import loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file, optionally with switches (':smoke').",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and metrics go; a workdir "
                               "that holds checkpoints is resumed.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  with cli.user_errors():
    cli.join_processes()
    scalars = loop.train(_CONFIG.value, _WORKDIR.value)
  numbers = {k: v for k, v in scalars.items() if isinstance(v, float)}
  if "stopped_by" in scalars:  # said already, with how to resume
    sys.exit(cli.EXIT_RESUMABLE)
  if not is_main_process():
    return
  if numbers:
    print("final: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(numbers.items())))
  else:  # the workdir's run had already finished: no step was taken
    print(f"Nothing to do: the run in {_WORKDIR.value} has already finished. Evaluate it with "
          f"python -m jaxssl.evaluate --workdir {_WORKDIR.value}, or train it longer with a "
          "larger --config.train.epochs (or train.steps).")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
