"""VAN: F_q per site vs the exact F at several betas (2-D Ising: Kaufman; SK: enumeration).

Each beta is one ``boltzgen train`` run of a template (default ``van-ising``: PixelCNN; or
``van-sk``: MADE; reverse KL with the score-function gradient, Z2 symmetry) with the steps and
batch given here and any further ``--set`` overrides; the numbers are the run summaries'
(``[sample] n`` fresh samples at the end). Prints a Markdown table and optionally writes the
summaries as JSON.

Usage::

    python analysis/van_table.py --L 8 --steps 200 --json-out van_ising.json
    python analysis/van_table.py --template van-sk --betas 0.5 1 1.5 2 --steps 1000
    python analysis/van_table.py --template van-sk --betas 0.25 0.5 1 1.5 2 --steps 250 --schedule

With ``--schedule`` one run trains the betas in turn (``[trainer] betas``, ``--steps`` each,
warm-started), and the table holds the estimates of each beta's last batch.
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


def run(
    template: str,
    size: list[str],
    betas: list[float],
    steps: int,
    batch: int,
    n_samples: int,
    extra: list[str],
) -> list[dict]:
    rows = []
    for beta in betas:
        config = apply_overrides(
            parse_config_text(template_text(template)),
            [
                *size,
                f"target.beta={beta}",
                f"trainer.steps={steps}",
                f"trainer.batch_size={batch}",
                f"sample.n={n_samples}",
                "trainer.progress=false",
                "trainer.checkpoint_every=0",
                "device='cpu'",
                *extra,
            ],
        )
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            summary = train_run(config, Path(folder) / "run", progress=False)
        summary["total_wall_time_s"] = time.perf_counter() - started
        summary.update(size=" ".join(size), target_beta=beta, batch=batch)
        print(json.dumps({k: v for k, v in summary.items() if k != "samples"}), flush=True)
        rows.append(summary)
    return rows


def run_schedule(
    template: str,
    size: list[str],
    betas: list[float],
    steps: int,
    batch: int,
    extra: list[str],
) -> list[dict]:
    """One run over the schedule ``betas`` (``steps`` each); its summary's rows per beta."""
    config = apply_overrides(
        parse_config_text(template_text(template)),
        [
            *size,
            f"target.beta={betas[-1]}",
            f"trainer.betas={list(betas)}",
            f"trainer.steps_per_beta={steps}",
            f"trainer.steps={steps * len(betas)}",
            f"trainer.batch_size={batch}",
            "sample.n=1000",
            "trainer.progress=false",
            "trainer.checkpoint_every=0",
            "device='cpu'",
            *extra,
        ],
    )
    with tempfile.TemporaryDirectory() as folder:
        summary = train_run(config, Path(folder) / "run", progress=False)
    rows = summary["beta_schedule"]
    for row in rows:
        row.update(
            size=" ".join(size),
            target_beta=row["schedule_beta"],
            batch=batch,
            steps=steps,
            wall_time_s=summary["wall_time_s"] / len(rows),
        )
        print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| size | beta | steps x batch | train s | F_q (s.e.) | F (exact) | rel. error | "
        "log Z est. - exact (s.e.) | ESS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['target_beta']:g} | {r['steps']} x {r['batch']} | "
            f"{r['wall_time_s']:.0f} | {r['free_energy_per_site']:.5f} "
            f"({r['free_energy_standard_error']:.1e}) | {r['exact_free_energy_per_site']:.5f} | "
            f"{r['free_energy_relative_error']:.1e} | {r['log_z_error']:+.3f} "
            f"({r['log_z_standard_error']:.3f}) | {r['ess']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default="van-ising", choices=["van-ising", "van-sk"])
    parser.add_argument("--L", type=int, default=8, help="lattice size (van-ising)")
    parser.add_argument("--n", type=int, default=20, help="spins (van-sk)")
    parser.add_argument("--set", action="append", default=[], help="further overrides")
    parser.add_argument("--betas", type=float, nargs="+", default=list(BETAS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--schedule", action="store_true", help="one run over the betas")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    size = [f"target.L={args.L}"] if args.template == "van-ising" else [f"target.n={args.n}"]
    if args.schedule:
        rows = run_schedule(args.template, size, args.betas, args.steps, args.batch, args.set)
    else:
        rows = run(args.template, size, args.betas, args.steps, args.batch, args.samples, args.set)
    print(markdown(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
