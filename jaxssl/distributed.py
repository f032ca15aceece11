"""The device mesh and multi-process start-up (JAX's multi-controller runtime).

One program runs on every host of a TPU pod or GPU cluster; ``initialize`` joins them before
anything touches a device. It starts JAX's distributed runtime only when the run is
multi-process, so the same command works on a laptop, and it is safe to call twice. Once it
is up, JAX's coordination service also watches the processes: when one dies, the others stop
(non-zero) within the heartbeat timeout instead of hanging in a collective.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
from jax.sharding import Mesh

from jaxssl.errors import DistributedError

DATA_AXIS = "data"

MODES = ("auto", "on", "off")


def data_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all devices (of all processes) with the batch axis ``data``.

  ``jax.sharding.Mesh`` has Auto axis types, so ordinary ``jnp`` code over a batch sharded on
  it (a covariance ``z.T @ z``) compiles with XLA inserting the collectives.
  """
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


@dataclasses.dataclass(frozen=True)
class Settings:
  """How this process joins a multi-process run.

  ``mode``: ``auto`` starts the runtime when the settings or the environment say the run has
  several processes (explicit settings, ``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``/
  ``JAX_COORDINATOR_ADDRESS``, a SLURM step or an Open MPI job with more than one task);
  ``on`` always starts it and lets JAX detect the cluster (Cloud TPU pods, where each worker
  learns its id from the TPU metadata); ``off`` never does. Unset fields come from the
  environment variables above, then from JAX's cluster detection.
  """
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  mode: str = "auto"
  heartbeat_timeout_s: int = 100
  initialization_timeout_s: int = 300

  def from_environment(self) -> Settings:
    env = os.environ
    return dataclasses.replace(
        self,
        coordinator_address=self.coordinator_address or env.get("JAX_COORDINATOR_ADDRESS"),
        num_processes=_int_or_none(self.num_processes, "JAX_NUM_PROCESSES"),
        process_id=_int_or_none(self.process_id, "JAX_PROCESS_ID"))


def _int_or_none(value: int | None, variable: str) -> int | None:
  if value is not None or not os.environ.get(variable):
    return value
  try:
    return int(os.environ[variable])
  except ValueError:
    raise DistributedError(f"${variable}={os.environ[variable]!r} is not an integer.") from None


def _scheduler_tasks() -> int:
  """How many tasks a SLURM step or Open MPI job started (1 outside either)."""
  for variable in ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    if os.environ.get(variable, "").isdigit():
      return int(os.environ[variable])
  return 1


def wants_runtime(settings: Settings) -> bool:
  """Whether ``settings`` (with the environment filled in) make this a multi-process run."""
  if settings.mode not in MODES:
    raise DistributedError(f"Distributed mode {settings.mode!r} is not one of {MODES}.")
  if settings.mode != "auto":
    return settings.mode == "on"
  if settings.num_processes is not None:
    return settings.num_processes > 1
  return settings.coordinator_address is not None or _scheduler_tasks() > 1


def initialize(settings: Settings = Settings()) -> bool:
  """Join the multi-process run ``settings`` describe, once; returns whether this process is
  part of one. Must run before the first JAX computation; a second call is a no-op."""
  if jax.distributed.is_initialized():
    return jax.process_count() > 1
  settings = settings.from_environment()
  if not wants_runtime(settings):
    return False
  explicit = settings.num_processes is not None
  if explicit and settings.num_processes > 1:
    missing = [name for name in ("coordinator_address", "process_id")
               if getattr(settings, name) is None]
    if missing:
      raise DistributedError(
          f"A run of {settings.num_processes} processes needs {' and '.join(missing)} too: "
          "pass --coordinator_address=HOST:PORT (process 0's address, the same on every "
          "process) and --process_id=I (0 to num_processes-1, one per process), or set "
          "$JAX_COORDINATOR_ADDRESS and $JAX_PROCESS_ID.")
    if not 0 <= settings.process_id < settings.num_processes:
      raise DistributedError(f"process_id {settings.process_id} is not in "
                             f"[0, {settings.num_processes}).")
  # CPU devices of different processes talk over gloo (TCP); without it XLA:CPU has no
  # cross-process collectives. GPU (NCCL) and TPU (ICI) backends ignore the setting.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
        coordinator_address=settings.coordinator_address,
        num_processes=settings.num_processes, process_id=settings.process_id,
        initialization_timeout=settings.initialization_timeout_s,
        heartbeat_timeout_seconds=settings.heartbeat_timeout_s)
  except (RuntimeError, ValueError) as err:
    raise DistributedError(
        f"Could not join the multi-process run ({settings}): {err}\nEvery process must be "
        "started with the same coordinator address and process count, process 0 must be "
        "reachable at that address, and all must start within "
        f"{settings.initialization_timeout_s} s.") from err
  return jax.process_count() > 1


def is_multiprocess() -> bool:
  return jax.process_count() > 1


def is_main_process() -> bool:
  """Process 0: the one that logs, shows progress and writes reports."""
  return jax.process_index() == 0
