"""The statistics of bench/methods.py's tables: intervals per row, paired differences for the
papers' claims, and the machines each row ran on.

A row's numbers are one run per seed. Per row: the mean, the sample std, the 95% confidence
interval of the mean (Student's t with n - 1 degrees of freedom), and the 95% interval of a
single run (mean ± 1.96 std: where a re-run at a new seed should land, what ``--verify``
checks). A claim compares two rows on the seeds both have: the per-seed difference's mean and
its 95% t-interval; "resolved" when that interval excludes 0. Each run records its machine
(CPU kind, jax, jaxlib, commit) since 2026-12-04; the runs before carry none ("unrecorded").
"""

from __future__ import annotations

import math

import numpy as np

# Two-sided 95% quantiles of Student's t by degrees of freedom (scipy.stats.t.ppf(0.975, df)).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
UNRECORDED = "unrecorded"
# The papers' claims, as (row, against, number): each answered by the paired difference.
CLAIMS = [
    ("info_vicreg_pairdist", "vicreg", "logistic"),
    ("info_vicreg_logdet", "vicreg", "logistic"),
    ("info_vicreg_pairdist", "vicreg", "knn"),
    ("info_vicreg_logdet", "vicreg", "knn"),
    ("corinfomax", "vicreg", "logistic"),
    ("corinfomax", "barlow_twins", "logistic"),
    ("corinfomax", "vicreg", "rankme"),
    ("supervised + vcreg", "supervised", "logistic"),
    ("supervised + vcreg", "supervised", "mnist_logistic"),
    ("vicreg", "random init", "logistic"),
]


def t975(df: int) -> float:
  """The 0.975 quantile of Student's t (the largest tabulated df at or below ``df``)."""
  if df < 1:
    return math.nan
  return T975[max(k for k in T975 if k <= df)]


def interval(values) -> dict:
  """Mean, sample std, the 95% interval of the mean and of a single run."""
  v = np.asarray(values, np.float64)
  n = len(v)
  mean = float(v.mean())
  std = float(v.std(ddof=1)) if n > 1 else math.nan
  half = t975(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
  return {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half],
          "single_run95": [mean - 1.96 * std, mean + 1.96 * std]}


def machine_of(run: dict) -> str:
  return (run.get("machine") or {}).get("cpu", UNRECORDED)


def rows(runs: dict, part: str) -> dict[str, dict[int, dict]]:
  """The finished runs of ``part`` (``table_e1``, ``table_e3``, ...): row -> seed -> run."""
  out: dict[str, dict[int, dict]] = {}
  for run in runs.values():
    if "error" in run or run.get("part") != "table":
      continue
    if f"table_e{run['overrides']['train.epochs']}" == part:
      out.setdefault(run["label"], {})[run["seed"]] = run
  return out


def paired(first: dict[int, dict], second: dict[int, dict], number: str) -> dict | None:
  """``first - second`` over the seeds both have: the mean difference and its interval."""
  seeds = sorted(set(first) & set(second))
  if len(seeds) < 2:
    return None
  diffs = [first[s][number] - second[s][number] for s in seeds]
  return {**interval(diffs), "seeds": seeds}


def verdict(result: dict | None) -> str:
  if result is None:
    return "fewer than 2 common seeds"
  lo, hi = result["ci95"]
  return "resolved" if lo > 0 or hi < 0 else "not resolved"


def claims(runs: dict, part: str) -> list[dict]:
  table = rows(runs, part)
  out = []
  for row, against, number in CLAIMS:
    if row in table and against in table:
      result = paired(table[row], table[against], number)
      out.append({"row": row, "against": against, "number": number, "paired": result,
                  "verdict": verdict(result)})
  return out


def _pct(number: str) -> float:
  return 1.0 if number in ("rankme", "train_s") else 100.0


CLAIMS_HEADER = ["| claim | number | seeds | paired difference | 95% interval | verdict |",
                 "|---|---|---:|---:|---|---|"]


def paired_markdown(claim: str, number: str, result: dict | None) -> str:
  """One row of a claims table: ``result`` is ``paired``'s (None: too few common seeds)."""
  if result is None:
    return f"| {claim} | {number} | - | - | - | {verdict(result)} |"
  scale = _pct(number)
  lo, hi = (scale * x for x in result["ci95"])
  return (f"| {claim} | {number} | {result['n']} | {scale * result['mean']:+.2f} | "
          f"[{lo:+.2f}, {hi:+.2f}] | {verdict(result)} |")


def claims_markdown(runs: dict, part: str) -> str:
  lines = list(CLAIMS_HEADER)
  for c in claims(runs, part):
    lines.append(paired_markdown(f"{c['row']} - {c['against']}", c["number"], c["paired"]))
  return "\n".join(lines)


def machine_names(runs: dict) -> dict[str, str]:
  """A short name per machine of all ``runs`` (M1, M2, ...; the same in every table)."""
  kinds = sorted({machine_of(r) for r in runs.values() if "error" not in r},
                 key=lambda k: (k != UNRECORDED, k))
  return {kind: f"M{i + 1}" for i, kind in enumerate(kinds)}


def rows_markdown(runs: dict, part: str) -> str:
  """Per row: seeds, mean ± std, the intervals of the logistic probe, and the machines."""
  table = rows(runs, part)
  names = machine_names(runs)
  kinds = sorted({machine_of(r) for seeds in table.values() for r in seeds.values()})
  lines = ["| method | seeds | logistic % | 95% CI of the mean | a single run (95%) | "
           "200-NN % | machines |", "|---|---:|---:|---|---|---:|---|"]
  order = sorted(table, key=lambda r: -np.mean([x["logistic"] for x in table[r].values()]))
  for row in order:
    seeds = table[row]
    logistic = interval([r["logistic"] for r in seeds.values()])
    knn = interval([r["knn"] for r in seeds.values()])
    machines = sorted({names[machine_of(r)] for r in seeds.values()})
    flag = " (mixed)" if len(machines) > 1 else ""
    lo, hi = (100 * x for x in logistic["ci95"])
    slo, shi = (100 * x for x in logistic["single_run95"])
    lines.append(f"| {row} | {logistic['n']} | {100 * logistic['mean']:.2f} ± "
                 f"{100 * logistic['std']:.2f} | [{lo:.2f}, {hi:.2f}] | [{slo:.2f}, {shi:.2f}] | "
                 f"{100 * knn['mean']:.2f} ± {100 * knn['std']:.2f} | "
                 f"{', '.join(machines)}{flag} |")
  legend = "; ".join(f"{names[k]}: {k}" for k in sorted(kinds, key=names.get))
  return "\n".join(lines) + f"\n\nMachines: {legend}."
