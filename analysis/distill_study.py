"""Distillation study on alanine dipeptide: a trained teacher flow into a smaller student flow by
each flow divergence, judged against the Boltzmann distribution at 300 K and against the teacher.

For every divergence the ``distill-alanine-dipeptide`` template is trained (``boltzgen train``,
one thread per run, ``--jobs`` runs side by side) from the teacher run directory, then the
students and the teacher are compared:

- ESS to the target at 300 K and the basin populations reweighted to it, beside the MD
  reference's (``summary.json``);
- ESS to the teacher and the fraction of student samples whose teacher log-density is below the
  teacher's own 1st percentile (MiniLLM's claim: reverse KD avoids such samples; forward KD
  spreads mass there);
- sampling speed, one thread: samples/s of drawing positions with log q, and effective samples/s
  after reweighting (draw + energy, times the ESS).

Usage::

    python analysis/distill_study.py runs/demo --out runs/distill-study --jobs 2 \\
        [--steps 2000] [--json-out analysis/distill_study_results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from boltzgen.trainers.flow_distillation import FLOW_DIVERGENCES
from boltzgen.workflow.runs import load_run
from boltzgen.workflow.templates import template_with

TEMPLATE = "distill-alanine-dipeptide"
BASINS = ("C7eq/C5", "alphaR", "alphaL")
#: Samples per speed measurement (one call each, after one warm-up call).
SPEED_SAMPLES = 8192


def train_student(teacher: Path, out: Path, divergence: str, steps: int) -> dict[str, Any]:
    """Train one student with ``boltzgen train`` (one thread); its summary."""
    run = out / divergence
    config = out / f"{divergence}.toml"
    overrides = [
        f'trainer.teacher="{teacher}"',
        f'trainer.divergence="{divergence}"',
        f"trainer.steps={steps}",
        "trainer.progress=false",
    ]
    config.write_text(template_with(TEMPLATE, overrides))
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "boltzgen", "train", str(config), "-o", str(run), "--json"]
    subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
    summary = json.loads((run / "summary.json").read_text())
    return {"divergence": divergence, "run": str(run), **summary}


@torch.no_grad()
def sampling_speed(run: Path, ess: float) -> dict[str, float]:
    """Samples/s of the run's model (positions and log q), and effective samples/s of draw +
    energy times ``ess``; one thread."""
    _, target, model = load_run(run)
    model.sample_and_log_prob(256)  # warm-up
    started = time.perf_counter()
    x, _ = model.sample_and_log_prob(SPEED_SAMPLES)
    drawn = time.perf_counter() - started
    target.energy(x)
    with_energy = time.perf_counter() - started
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "samples_per_s": SPEED_SAMPLES / drawn,
        "effective_samples_per_s": SPEED_SAMPLES * ess / with_energy,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The study's markdown table."""
    header = (
        "| model | parameters | training wall | ESS at 300 K | C7eq/C5 % | alphaR % | alphaL % "
        "| ESS to teacher | below teacher's 1st pct | samples/s | effective samples/s |"
    )
    lines = [header, "|" + "---|" * 11]
    for row in rows:
        basins = row["reweighted_basin_populations"]
        errors = row["reweighted_basin_se"]
        cells = [
            row["name"],
            f"{row['parameters']:,}",
            f"{row['wall_time_s'] / 60:.1f} min",
            f"{row['ess']:.3f}",
            *(f"{100 * basins[b]:.2f} +- {100 * errors[b]:.2f}" for b in BASINS),
            f"{row['ess_teacher']:.3f}" if "ess_teacher" in row else "1",
            f"{100 * row['teacher_low_density_fraction']:.2f} %"
            if "teacher_low_density_fraction" in row
            else "1 % (by definition)",
            f"{row['samples_per_s']:,.0f}",
            f"{row['effective_samples_per_s']:,.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    reference = rows[0].get("md_reference_basin_populations")
    if reference:
        se = rows[0]["md_reference_basin_se"]
        md = " | ".join(f"{100 * reference[b]:.2f} +- {100 * se[b]:.2f}" for b in BASINS)
        lines.append(f"| MD reference | | | | {md} | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", type=Path, help="the teacher's run directory (runs/demo)")
    parser.add_argument("--out", type=Path, default=Path("runs/distill-study"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--divergences", nargs="+", default=list(FLOW_DIVERGENCES))
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    teacher = args.teacher.resolve()
    with ThreadPoolExecutor(args.jobs) as pool:
        students = list(
            pool.map(lambda d: train_student(teacher, args.out, d, args.steps), args.divergences)
        )
    teacher_summary = json.loads((teacher / "summary.json").read_text())
    rows = [{"name": "teacher", **teacher_summary}]
    rows += [{"name": f"student, {s['divergence']}", **s} for s in students]
    for row in rows:
        row.update(sampling_speed(Path(row.get("run", teacher)), row["ess"]))
    print(table(rows))
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
