"""The evaluation report of a run: ``eval.json``, ``report.md`` and PNG plots (in a directory
or a bucket: ``jaxssl.storage``)."""

from __future__ import annotations

import io
import json

import numpy as np

from jaxssl import storage
from jaxssl.evaluate import evaluators
from jaxssl.train import metrics

def _cell(name: str, value: float) -> str:
  if evaluators.is_accuracy(name):
    return f"{100 * value:.2f}%"
  return f"{value:.1f}" if abs(value) >= 10 else f"{value:.4g}"


def table(results: dict[str, dict[str, float]]) -> str:
  """A Markdown table: one row per encoder, one column per name its evaluators returned
  (their ``details`` aside, which stay in ``eval.json``)."""
  columns = []
  for values in results.values():
    columns += [n for n in values if n not in columns and not evaluators.is_detail(n)]
  lines = ["| encoder | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
  for encoder, values in results.items():
    cells = [_cell(n, values[n]) if n in values else "" for n in columns]
    lines.append(f"| {encoder} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot_spectra(spectra: dict[str, np.ndarray], path: storage.Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, eig in spectra.items():
    eig = np.maximum(eig / eig.max(), 1e-12)
    ax.semilogy(np.arange(1, len(eig) + 1), eig, label=name)
  ax.set_xlabel("index")
  ax.set_ylabel("covariance eigenvalue / largest")
  ax.set_title("Embedding covariance spectrum (test split)")
  ax.legend()
  _save(fig, path)


def _save(fig, path: storage.Path) -> None:
  """The figure as a PNG at ``path`` (Matplotlib writes local files only: through memory)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig.tight_layout()
  png = io.BytesIO()
  fig.savefig(png, format="png", dpi=100)
  plt.close(fig)
  path.write_bytes(png.getvalue())


def _series(records: list[dict], *names: str) -> list[tuple[int, float]]:
  """``(step, value)`` of the first of ``names`` each log line has (logs written before a
  metric was renamed keep its old name), skipping lines with none of them."""
  out = []
  for m in records:
    value = next((m[n] for n in names if n in m), None)
    if value is not None:
      out.append((m["step"], value))
  return out


def plot_curves(records: list[dict], path: storage.Path) -> bool:
  loss = _series(records, "loss")
  if not loss:
    return False
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
  ax_loss.plot(*zip(*loss))
  ax_loss.set_xlabel("step")
  ax_loss.set_ylabel("loss")
  for names, style, label in ((("head/accuracy", "head_accuracy"), "-", "online probe (train)"),
                              (("head/val_accuracy", "val_head_accuracy"), "o-",
                               "online probe (eval split)"),
                              (("eval/knn",), "s-", "k-NN (eval subset)")):
    series = _series(records, *names)
    if series:
      ax_acc.plot(*zip(*series), style, label=label)
  ax_acc.set_xlabel("step")
  ax_acc.set_ylabel("accuracy")
  if ax_acc.lines:  # none without labels (unlabeled data: no head, no k-NN)
    ax_acc.legend()
  _save(fig, path)
  return True


def plot_map(features: np.ndarray, labels: np.ndarray, path: storage.Path, *, examples: int,
             seed: int = 0) -> int:
  """A 2-D map of ``examples`` test features (strided over the split) coloured by label:
  scikit-learn's t-SNE (perplexity 30, PCA initialisation) on the standardised features.
  Returns how many points it drew."""
  from sklearn import manifold  # pylint: disable=g-import-not-at-top
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = (np.arange(min(examples, len(features))) * len(features)) // min(examples,
                                                                           len(features))
  x = np.asarray(features[rows], np.float64)
  x = (x - x.mean(0)) / (x.std(0) + 1e-6)
  perplexity = min(30.0, (len(x) - 1) / 3)
  points = manifold.TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
  fig, ax = plt.subplots(figsize=(6, 6))
  shown = np.asarray(labels)[rows]
  labeled = shown >= 0  # unlabeled images carry -1: grey, without a legend entry
  ax.scatter(points[~labeled, 0], points[~labeled, 1], c="0.6", s=4)
  if labeled.any():
    scatter = ax.scatter(points[labeled, 0], points[labeled, 1], c=shown[labeled], cmap="tab10",
                         s=4)
    ax.legend(*scatter.legend_elements(), title="label", loc="best", fontsize="small")
  ax.set_title(f"t-SNE of {len(x)} test features"
               + (", coloured by label" if labeled.any() else " (unlabeled)"))
  ax.set_xticks([])
  ax.set_yticks([])
  _save(fig, path)
  return len(x)


def write(out_dir: storage.Path, workdir: storage.Path, summary: dict,
          spectra: dict[str, np.ndarray], *, embedding: tuple[np.ndarray, np.ndarray] | None = None,
          map_examples: int = 0, seed: int = 0) -> None:
  """``eval.json`` first (the numbers are never lost to a plot), then the PNGs and
  ``report.md``; with ``embedding`` (test features, labels) and ``map_examples`` > 0, a t-SNE
  map of the embedding too."""
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / "eval.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
  plot_spectra(spectra, out_dir / "spectrum.png")
  curves = plot_curves(metrics.read(workdir), out_dir / "curves.png")
  drawn = (plot_map(*embedding, out_dir / "map.png", examples=map_examples, seed=seed)
           if embedding is not None and map_examples > 0 else 0)
  results = summary["results"]
  lines = [f"# Evaluation of {workdir} (step {summary['step']})", "",
           f"Dataset {summary['dataset']}: train split {summary['train_examples']} examples, "
           f"test split {summary['test_examples']} examples; features of the frozen "
           f"{'projector' if summary['projector'] else 'backbone'}.", "", table(results), "",
           "![covariance spectrum](spectrum.png)"]
  for warning in summary.get("warnings", []):
    lines += ["", f"Warning: {warning}"]
  if curves:
    lines += ["", "![training curves](curves.png)"]
  if drawn:
    lines += ["", f"![t-SNE map of {drawn} test features](map.png)"]
  (out_dir / "report.md").write_text("\n".join(lines) + "\n")
