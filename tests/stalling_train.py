"""``python tests/stalling_train.py STEP PROCESS [jaxssl.train flags]``: ``jaxssl.train`` whose
train step blocks forever before step STEP on process PROCESS (-1: on every process), the
injected hang of the watchdog tests."""

import sys
import threading

import jax
from absl import app

from jaxssl.train import __main__ as train_main
from jaxssl.train import step as step_lib

STALL_AT, STALL_PROCESS = int(sys.argv.pop(1)), int(sys.argv.pop(1))
_jit_train_step = step_lib.jit_train_step


def stalling_jit_train_step(*args, **kwargs):
  jitted = _jit_train_step(*args, **kwargs)

  def train_step(state, batch):
    if (int(jax.device_get(state.step)) == STALL_AT
        and STALL_PROCESS in (-1, jax.process_index())):
      threading.Event().wait()  # a step that never completes
    return jitted(state, batch)
  return train_step


step_lib.jit_train_step = stalling_jit_train_step

if __name__ == "__main__":
  app.run(train_main.main)
