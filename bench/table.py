"""Renders benchmark JSON files as the Markdown tables of the README.

  python bench/table.py bench/results/losses.json bench/results/ica.json
"""

import json
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
      "| k | sources | VCReg Amari | FastICA Amari | VCReg s | FastICA s |",
      "|---:|---|---:|---:|---:|---:|",
  ]
  for r in result["rows"]:
    lines.append(f"| {r['k']} | {r['sources']} | {r['vcreg_amari']:.4f} | "
                 f"{r['fastica_amari']:.4f} | {r['vcreg_s']:.1f} | {r['fastica_s']:.2f} |")
  return "\n".join(lines)


TABLES = {"losses": losses_table, "ica": ica_table}

if __name__ == "__main__":
  for path in sys.argv[1:]:
    result = json.load(open(path))
    kind = "ica" if "fastica_amari" in result["rows"][0] else "losses"
    print(f"<!-- {path} -->")
    print(TABLES[kind](result))
    print()
