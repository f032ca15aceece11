"""Renders benchmark JSON files as the Markdown tables of the README.

  python bench/table.py bench/results/losses.json bench/results/ica.json \
      bench/results/ica_projectors.json bench/results/train_step_cpu.json
"""

import json
import os
import sys


def ms(value):
  """Milliseconds with about three significant digits, never in exponent form."""
  return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.3f}"


def losses_table(result):
  machine = result["machine"]
  lines = [
      f"{machine['device']}, float32 matmul {machine['matmul_gflops']:.0f} GFLOP/s; "
      f"jax {machine['jax']}, torch {machine['torch']} on {machine['torch_device']}",
      "",
      "| loss | N | D | jaxssl ms | PyTorch ms | speed-up | FLOP floor ms | x floor |",
      "|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in result["rows"]:
    lines.append(f"| {r['loss']} | {r['n']} | {r['d']} | {ms(r['jaxssl_ms'])} | "
                 f"{ms(r['torch_ms'])} | {r['speedup']:.1f}x | {ms(r['floor_ms'])} | "
                 f"{r['x_floor']:.2f}x |")
  return "\n".join(lines)


def ica_table(result):
  machine = result["machine"]
  lines = [
      f"{machine['device']}; jax {machine['jax']}, scikit-learn {machine['sklearn']}; "
      f"N = {result['settings']['n']}, seed {result['settings']['seed']}",
      "",
      "| k | sources | Jacobi Amari (sweeps) | gradient Amari | FastICA Amari | Jacobi s | "
      "gradient s | FastICA s |",
      "|---:|---|---:|---:|---:|---:|---:|---:|",
  ]
  for r in result["rows"]:
    lines.append(f"| {r['k']} | {r['sources']} | {r['jacobi_amari']:.4f} "
                 f"({r['jacobi_sweeps']}) | {r['gradient_amari']:.4f} | "
                 f"{r['fastica_amari']:.4f} | {r['jacobi_s']:.1f} | {r['gradient_s']:.1f} | "
                 f"{r['fastica_s']:.2f} |")
  return "\n".join(lines)


def train_step_table(result):
  st = result["settings"]
  first = result["results"][0]
  versions = ", ".join(f"{k} {first[k]}" for k in ("jax", "torch") if k in first)
  torch_versions = {r["torch"] for r in result["results"] if "torch" in r}
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import train_step  # pylint: disable=g-import-not-at-top
  # The CPU's kind where the file has it (since 2026-12-06; a CPU run's devices say "cpu").
  devices = [result["machine"].get("cpu", d) if d == "cpu" else d
             for d in result["machine"]["devices"]]
  lines = [
      f"{', '.join(devices)}; {train_step.model_name(st)} at "
      f"{st['size']}x{st['size']}, projector {st['projector']}; {versions}"
      f"{', torch ' + ', '.join(sorted(torch_versions)) if torch_versions else ''}; "
      f"{result['machine']['date']}",
      "",
  ]
  # MFU (of the data-sheet peak) and the share of the measured matmul rate, where a row has
  # them (accelerators; a CPU has neither).
  shares = [k for k in ("mfu", "of_matmul")
            if any(m.get(k) for r in result["results"] for m in r["rows"].values())]
  titles = {"mfu": "MFU", "of_matmul": "of matmul"}
  # --rounds: the ms column is the median of the rounds, each round's own in the last column.
  rounds = any(m.get("rounds") for r in result["results"] for m in r["rows"].values())
  lines += ["| variant | step | images | ms | images/s | "
            + "".join(f"{titles[k]} | " for k in shares) + "SSL overhead |"
            + (" rounds, ms |" if rounds else ""),
            "|---|---|---:|---:|---:|" + "---:|" * len(shares) + "---:|"
            + ("---|" if rounds else "")]
  for r in result["results"]:
    for row, m in r["rows"].items():
      overhead = f"{r['ssl_overhead']:.3f}" if row == "step" and "ssl_overhead" in r else ""
      cells = "".join(f"{100 * m[k]:.1f}% | " if m.get(k) else "- | " for k in shares)
      each = (" " + ", ".join(ms(1e3 * t) for t in m.get("rounds", ())) + " |"
              if rounds else "")
      lines.append(f"| {r['label']} | {row} | {m['images']} | {ms(1e3 * m['seconds'])} | "
                   f"{m['images_per_s']:,.1f} | {cells}{overhead} |{each}")
  return "\n".join(lines)


def scaling_table(result):
  """One row per loss, size and form: GFLOP per device at each device count, and the bytes
  its collectives produce at the largest count."""
  counts = sorted({r["devices"] for r in result["rows"]})
  cells = {}
  for r in result["rows"]:
    cells.setdefault((r["loss"], r["n"], r["d"], r["form"]), {})[r["devices"]] = r
  lines = [
      f"{result['machine']['cpus']} CPU cores as {counts[0]}-{counts[-1]} virtual XLA "
      f"devices, global batch fixed; {result['machine']['date']}",
      "",
      "| loss | N | D | form | " + " | ".join(f"GFLOP/device at {c}" for c in counts)
      + f" | MB by collectives at {counts[-1]} |",
      "|---|---:|---:|---|" + "---:|" * (len(counts) + 1),
  ]
  for (loss, n, d, form), by_count in cells.items():
    flops = " | ".join(f"{by_count[c]['flops_per_device'] / 1e9:.1f}" for c in counts)
    lines.append(f"| {loss} | {n} | {d} | {form} | {flops} | "
                 f"{by_count[counts[-1]]['bytes_per_device'] / 1e6:.1f} |")
  return "\n".join(lines)


def ica_projectors_table(result):
  machine = result["machine"]
  lines = [
      (f"Jacobi sweeps under three frozen projectors ({result['settings']['width']} features); "
       f"jax {machine['jax']}, scikit-learn {machine['sklearn']}; N = {result['settings']['n']}"),
      "",
      "| k | sources | seed | threshold (default) | random | random, kinks spread | FastICA |",
      "|---:|---|---:|---:|---:|---:|---:|",
  ]
  keys = ("threshold_amari", "random_amari", "random_spread_amari", "fastica_amari")
  for r in result["rows"]:
    lines.append(f"| {r['k']} | {r['sources']} | {r['seed']} | "
                 + " | ".join(f"{r[key]:.4f}" for key in keys) + " |")
  lines.append("| **mean** | | | "
               + " | ".join(f"**{result['means'][key]:.4f}**" for key in keys) + " |")
  return "\n".join(lines)


def quickstart_table(result):
  """bench/quickstart.py: the trainer's images/s per setting, its wall time and speed-up."""
  m = result["machine"]
  rounds = result["rounds"]
  lines = [f"{m['cpu']}; {result['steps']} steps per run, {rounds} round"
           f"{'s' if rounds > 1 else ''}; {m['date']}", "",
           "| setting | images/s | wall s | speed-up |", "|---|---:|---:|---:|"]
  for r in result["rows"]:
    lines.append(f"| {r['setting']} | {r['images_per_s']:,.0f} | {r['wall_s']:.0f} | "
                 f"{r['speedup']:.2f}x |")
  return "\n".join(lines)


def precision_table(result):
  """bench/precision.py: each loss's float32 error against float64, at JAX's default matmul
  precision and at "highest", and its forward + backward time at each."""
  lines = [f"{result['device']} ({result['platform']}); jax {result['jax']}; {result['date']}",
           "", "| loss | N | D | value, default | value, highest | gradient, default | "
           "gradient, highest | ms, default | ms, highest |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in result["rows"]:
    lo, hi = r["default"], r["highest"]
    lines.append(f"| {r['loss']} | {r['n']} | {r['d']} | {lo['value']:.1e} | {hi['value']:.1e} "
                 f"| {lo['grad']:.1e} | {hi['grad']:.1e} | {ms(lo['ms'])} | {ms(hi['ms'])} |")
  return "\n".join(lines)


def conv_table(result):
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import conv  # pylint: disable=g-import-not-at-top
  return conv.render(result)


TABLES = {"conv": conv_table, "losses": losses_table, "ica": ica_table,
          "ica_projectors": ica_projectors_table, "train_step": train_step_table,
          "scaling": scaling_table, "quickstart": quickstart_table,
          "precision": precision_table}


def kind_of(result):
  if "nets" in result:
    return "conv"
  if "platform" in result:
    return "precision"
  if "steps" in result and "rounds" in result:
    return "quickstart"
  if "suite" in result:
    return "train_step"
  if "cases" in result:
    return "scaling"
  if "means" in result:
    return "ica_projectors"
  return "ica" if "fastica_amari" in result["rows"][0] else "losses"


if __name__ == "__main__":
  for path in sys.argv[1:]:
    result = json.load(open(path))
    kind = kind_of(result)
    print(f"<!-- {path} -->")
    print(TABLES[kind](result))
    print()
