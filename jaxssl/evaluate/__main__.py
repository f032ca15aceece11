"""``python -m jaxssl.evaluate --workdir DIR [--step N] [--out DIR]``: probes, k-NN, RankMe of
a pretrained run against a randomly initialised encoder; writes eval.json, report.md, PNGs.

Runs on any number of devices and processes (the multi-process flags of ``jaxssl/cli.py``);
every process computes its share of the features, process 0 writes the report."""

from absl import app, flags, logging

from jaxssl import cli
from jaxssl.distributed import is_main_process
from jaxssl.evaluate import report
from jaxssl.evaluate.run import evaluate

_WORKDIR = flags.DEFINE_string("workdir", None, "The run directory (python -m jaxssl.train).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_OUT = flags.DEFINE_string("out", None, "Where the report goes (default: WORKDIR/eval).")
_BASELINE = flags.DEFINE_bool("random_baseline", None, "Also evaluate a randomly "
                              "initialised encoder (default: the run config's choice).")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  with cli.user_errors():
    cli.join_processes()
    summary = evaluate(_WORKDIR.value, step=_STEP.value, out_dir=_OUT.value,
                       random_baseline=_BASELINE.value)
  if not is_main_process():
    return
  print(f"\nStep {summary['step']} of {summary['workdir']}, test split of "
        f"{summary['dataset']} ({summary['test_examples']} examples):\n")
  print(report.table(summary["results"]))
  print(f"\nReport: {_OUT.value or summary['workdir'] + '/eval'}/report.md "
        f"({summary['seconds']:.0f} s)")


if __name__ == "__main__":
  app.run(main)
