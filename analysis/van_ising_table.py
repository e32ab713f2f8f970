"""VAN on the 2-D Ising torus: F_q per site vs Kaufman's exact F at several betas.

Each beta is one ``boltzgen train`` run of the ``van-ising`` template (PixelCNN, reverse KL with
the score-function gradient, Z2 symmetry) with the size, steps and batch given here; the numbers
are the run summaries' (``[sample] n`` fresh samples at the end). Prints a Markdown table and
optionally writes the summaries as JSON.

Usage::

    python analysis/van_ising_table.py --L 8 --steps 200 --json-out van_ising.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from boltzgen.workflow.config import apply_overrides, parse_config_text
from boltzgen.workflow.runs import train_run
from boltzgen.workflow.templates import template_text

BETAS = (0.3, 0.4, 0.44, 0.5, 0.6)


def run(L: int, betas: list[float], steps: int, batch: int, n_samples: int) -> list[dict]:
    rows = []
    for beta in betas:
        config = apply_overrides(
            parse_config_text(template_text("van-ising")),
            [
                f"target.L={L}",
                f"target.beta={beta}",
                f"trainer.steps={steps}",
                f"trainer.batch_size={batch}",
                f"sample.n={n_samples}",
                "trainer.progress=false",
                "trainer.checkpoint_every=0",
                "device='cpu'",
            ],
        )
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            summary = train_run(config, Path(folder) / "run", progress=False)
        summary["total_wall_time_s"] = time.perf_counter() - started
        summary.update(L=L, target_beta=beta, batch=batch)
        print(json.dumps({k: v for k, v in summary.items() if k != "samples"}), flush=True)
        rows.append(summary)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| L | beta | steps x batch | train s | F_q (s.e.) | F (Kaufman) | rel. error | "
        "log Z est. - exact (s.e.) | ESS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['L']} | {r['target_beta']:g} | {r['steps']} x {r['batch']} | "
            f"{r['wall_time_s']:.0f} | {r['free_energy_per_site']:.5f} "
            f"({r['free_energy_standard_error']:.1e}) | {r['exact_free_energy_per_site']:.5f} | "
            f"{r['free_energy_relative_error']:.1e} | {r['log_z_error']:+.3f} "
            f"({r['log_z_standard_error']:.3f}) | {r['ess']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=8)
    parser.add_argument("--betas", type=float, nargs="+", default=list(BETAS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    rows = run(args.L, args.betas, args.steps, args.batch, args.samples)
    print(markdown(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
