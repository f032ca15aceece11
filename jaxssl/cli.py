"""What the command-line entry points share: the flags that join a multi-process run.

Each process of a pod or cluster runs the same command; these flags (or the environment
variables named in ``jaxssl.distributed.Settings``) say how it finds the others.
"""

import contextlib
import sys

from absl import flags

from jaxssl import distributed
from jaxssl.errors import UserError
from jaxssl.watchdog import EXIT_STATUS as EXIT_STALLED

# The exit statuses of the command lines, for schedulers and scripts: 0 finished, 1 a user
# error (one paragraph on stderr), 3 stalled (the watchdog: the stacks on stderr, resumable
# from the last checkpoint), 75 (EX_TEMPFAIL) stopped early by SIGTERM or SIGINT after a final
# checkpoint: run the same command again to resume (launch/slurm.sbatch requeues on it).
EXIT_FINISHED, EXIT_USER_ERROR, EXIT_RESUMABLE = 0, 1, 75
EXIT_STATUSES = {EXIT_FINISHED: "finished", EXIT_USER_ERROR: "user error",
                 EXIT_STALLED: "stalled (watchdog)", EXIT_RESUMABLE: "stopped early, resumable"}

_MODE = flags.DEFINE_enum(
    "distributed", "auto", distributed.MODES,
    "auto: join a multi-process run when the flags below, $JAX_NUM_PROCESSES / "
    "$JAX_COORDINATOR_ADDRESS, or a SLURM / Open MPI job with several tasks say there is one; "
    "on: always (Cloud TPU pods, where JAX finds the workers itself); off: never.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0, the same on every process.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process, 0 to num_processes-1.")
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout_s", 100, "When a process has not been heard from for this long, the "
    "others stop with an error instead of waiting for it.")
_INIT_TIMEOUT = flags.DEFINE_integer(
    "initialization_timeout_s", 300, "How long processes wait for each other at start-up.")


def join_processes() -> bool:
  """``jaxssl.distributed.initialize`` from the flags; call before any JAX computation."""
  return distributed.initialize(distributed.Settings(
      coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
      process_id=_PROCESS_ID.value, mode=_MODE.value,
      heartbeat_timeout_s=_HEARTBEAT.value, initialization_timeout_s=_INIT_TIMEOUT.value))


@contextlib.contextmanager
def user_errors():
  """Anything the user can fix (``jaxssl.errors.UserError``) ends the command with its message
  as one paragraph on stderr and exit status 1; anything else is a bug and keeps its
  traceback."""
  try:
    yield
  except UserError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a ``--config.a.b=v`` that names no key of the config turned
  into a one-paragraph error (exit status 1) instead of ml_collections' traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as err:
    # ml_collections nests the KeyError's repr in the AttributeError: unescape it once.
    detail = str(err.args[0] if err.args else err).encode().decode("unicode_escape")
    detail = " ".join(detail.replace("'", "").replace("\n", ": ").split())
    overrides = ", ".join(a.split("=")[0] for a in argv[1:] if a.startswith("--config."))
    print(f"error: a --config override names a key the config does not have ({detail}); "
          f"check {overrides or 'the --config.* flags'}. Method coefficients are "
          "--config.method.kwargs.<name>, for any keyword of any method's loss in "
          "jaxssl.losses; the other keys are listed by printing the config: python -c "
          "\"from jaxssl import config; print(config.load('CONFIG_FILE'))\".", file=sys.stderr)
    sys.exit(1)
