"""Renders benchmark JSON files as the Markdown tables of the README.

  python bench/table.py bench/results/losses.json [more.json ...]
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


if __name__ == "__main__":
  for path in sys.argv[1:]:
    print(f"<!-- {path} -->")
    print(losses_table(json.load(open(path))))
    print()
