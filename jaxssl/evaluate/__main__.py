"""``python -m jaxssl.evaluate --workdir DIR [--step N] [--out DIR] [--evals a,b]
[--examples TRAIN,TEST] [--set evals.x.y=V ...]``: the evaluators of a pretrained run
(default: the config's offline set: knn, logistic, rankme, ridge) against a randomly
initialised encoder; writes eval.json, report.md, PNGs.

Runs on any number of devices and processes (the multi-process flags of ``jaxssl/cli.py``);
every process computes its share of the features, process 0 writes the report.

Exit status: 0 done; 1 a one-paragraph message on a bad workdir, checkpoint or setting; 3 a
stalled feature pass (the watchdog's stacks on stderr)."""

from absl import app, flags, logging

from jaxssl import cli
from jaxssl.distributed import is_main_process
from jaxssl.errors import ConfigError
from jaxssl.evaluate import report
from jaxssl.evaluate.run import evaluate

_WORKDIR = flags.DEFINE_string("workdir", None, "The run directory (python -m jaxssl.train).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_OUT = flags.DEFINE_string("out", None, "Where the report goes (default: WORKDIR/eval).")
_BASELINE = flags.DEFINE_bool("random_baseline", None, "Also evaluate a randomly "
                              "initialised encoder (default: the run config's choice).")
_EVALS = flags.DEFINE_list("evals", None, "Evaluators to run, comma-separated (default: "
                          "the config's evals with offline=True).")
_EXAMPLES = flags.DEFINE_list("examples", None, "TRAIN,TEST: evaluate on a fixed subset of "
                              "that many examples of each split (strided, as during "
                              "training), for every evaluator: the probes, k-NN and RankMe "
                              "read those features, the linear head trains on that train "
                              "subset, fine-tuning takes its fraction of it.")
_SET = flags.DEFINE_multi_string("set", [], "KEY=VALUE: change an evaluation setting of the "
                                  "run's config (eval.* or evals.*), e.g. "
                                  "--set evals.linear.epochs=10; repeatable.")
flags.mark_flag_as_required("workdir")


def _settings(pairs: list[str]) -> dict[str, str]:
  bad = [p for p in pairs if "=" not in p]
  if bad:
    raise ConfigError(f"--set takes KEY=VALUE (e.g. evals.linear.epochs=10); got {bad}.")
  return dict(p.split("=", 1) for p in pairs)


def _examples(value: list[str] | None) -> tuple[int | None, int | None]:
  if value is None:
    return None, None
  try:
    train, test = (int(v) for v in value)
  except ValueError:
    train = test = 0
  if train <= 0 or test <= 0:
    raise ConfigError(f"--examples takes two positive counts, TRAIN,TEST (e.g. 10000,2000); "
                      f"got {','.join(value)!r}.")
  return train, test


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  with cli.user_errors():
    cli.join_processes()
    summary = evaluate(_WORKDIR.value, step=_STEP.value, out_dir=_OUT.value,
                       random_baseline=_BASELINE.value, chosen=_EVALS.value,
                       examples=_examples(_EXAMPLES.value), settings=_settings(_SET.value))
  if not is_main_process():
    return
  print(f"\nStep {summary['step']} of {summary['workdir']}, test split of "
        f"{summary['dataset']} ({summary['test_examples']} examples):\n")
  print(report.table(summary["results"]))
  for warning in summary["warnings"]:
    print(f"\nWarning: {warning}")
  print(f"\nReport: {_OUT.value or summary['workdir'] + '/eval'}/report.md "
        f"({summary['seconds']:.0f} s)")


if __name__ == "__main__":
  app.run(main)
