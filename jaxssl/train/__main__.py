"""``python -m jaxssl.train --config configs/X.py[:smoke] --workdir DIR [--config.key=value]``."""

from absl import app, flags, logging
from ml_collections import config_flags

from jaxssl.train import loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file, optionally with ':smoke'.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and metrics go; a workdir "
                               "that holds checkpoints is resumed.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  scalars = loop.train(_CONFIG.value, _WORKDIR.value)
  print("final: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(scalars.items())))


if __name__ == "__main__":
  app.run(main)
