"""Time-to-ESS of TA-BG runs: reverse ESS against training wall time and energy evaluations.

Reads finished run directories (``metrics.csv``, ``ladder.json``, ``summary.json``) and plots,
per run, the ESS estimates a run makes on its way:

- pretraining: the ESS of each logged batch (``pretrain_batch_size`` samples at ``t_high``; a
  noisy estimate, shown as small dots);
- each rung: the ESS of its buffer (``buffer_samples`` samples of the previous flow at the
  temperature it samples, circles), when it was drawn (``metrics.csv``'s step-0 row of the rung);
- the end: the ESS of the final sample (``[sample] n`` samples at the sampling temperature, a
  star), at the training wall time (sampling not included).

Only estimates at the target temperature (``t_low``) are joined by a line; the others are drawn
lighter. Prints a table with the first wall time and energy count at which each run's ESS at the
target temperature reached 0.1, 0.2 and 0.3.

Usage::

    python analysis/time_to_ess.py runs/demo [RUN ...] --out docs/figures/time_to_ess.png
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

#: ESS levels of the table.
LEVELS = (0.1, 0.2, 0.3)


def estimates(run: Path) -> tuple[list[dict], float]:
    """The run's ESS estimates in time order (``kind``, ``temperature``, ``ess``,
    ``wall_time_s``, ``energy_evaluations``) and its target temperature."""
    ladder = json.loads((run / "ladder.json").read_text())
    target = min(ladder["temperatures"])
    sample_temperature = {rung["stage"]: rung["sample_temperature"] for rung in ladder["rungs"]}
    points = []
    with open(run / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if not row["ess"] or (
                row["stage"] != "pretrain" and row["stage"] not in sample_temperature
            ):
                continue
            pretrain = row["stage"] == "pretrain"
            points.append(
                {
                    "kind": "batch" if pretrain else "buffer",
                    "temperature": ladder["temperatures"][0]
                    if pretrain
                    else sample_temperature[row["stage"]],
                    "ess": float(row["ess"]),
                    "wall_time_s": float(row["wall_time_s"]),
                    "energy_evaluations": int(row["energy_evaluations"]),
                }
            )
    summary = json.loads((run / "summary.json").read_text())
    points.append(
        {
            "kind": "final",
            "temperature": summary["sample_temperature"],
            "ess": summary["ess"],
            "wall_time_s": summary["wall_time_s"],
            "energy_evaluations": summary["energy_evaluations"],
        }
    )
    points.sort(key=lambda point: point["wall_time_s"])
    return points, target


def first_reaching(points: list[dict], target: float, level: float) -> dict | None:
    """The first estimate at the target temperature with ESS >= ``level`` (batch estimates
    excluded: a batch of a few hundred samples overstates a poor flow's ESS)."""
    for point in points:
        if point["kind"] != "batch" and point["temperature"] == target and point["ess"] >= level:
            return point
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("time_to_ess.png"))
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    figure, (by_time, by_energy) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    table = []
    print(f"{'run':24} {'target K':>8} " + " ".join(f"{'ESS>=' + str(x):>18}" for x in LEVELS))
    for run in args.runs:
        try:
            points, target = estimates(run)
        except (OSError, KeyError, ValueError) as error:
            sys.exit(f"{run}: not a finished TA-BG run directory ({error})")
        line = None
        for axis, key, scale in (
            (by_time, "wall_time_s", 60.0),
            (by_energy, "energy_evaluations", 1.0),
        ):
            at_target = [p for p in points if p["temperature"] == target and p["kind"] != "batch"]
            (line,) = axis.plot(
                [p[key] / scale for p in at_target],
                [p["ess"] for p in at_target],
                "-o",
                label=f"{run.name} (ESS at {target:g} K)",
                color=line.get_color() if line is not None else None,
            )
            colour = line.get_color()
            lighter = (
                ([p for p in points if p["kind"] == "batch"], ".", 3),
                (
                    [p for p in points if p["kind"] == "buffer" and p["temperature"] != target],
                    "o",
                    6,
                ),
            )
            for subset, marker, size in lighter:
                axis.plot(
                    [p[key] / scale for p in subset],
                    [p["ess"] for p in subset],
                    marker,
                    color=colour,
                    alpha=0.35,
                    markersize=size,
                )
            final = points[-1]
            axis.plot([final[key] / scale], [final["ess"]], "*", color=colour, markersize=14)
        reached = {level: first_reaching(points, target, level) for level in LEVELS}
        cells = [
            f"{p['wall_time_s'] / 60:5.1f} min {p['energy_evaluations']:9.3g}" if p else "-"
            for p in reached.values()
        ]
        print(f"{run.name:24} {target:8g} " + " ".join(f"{cell:>18}" for cell in cells))
        table.append(
            {
                "run": str(run),
                "target_K": target,
                "points": points,
                "reached": {
                    str(level): None
                    if p is None
                    else {k: p[k] for k in ("wall_time_s", "energy_evaluations", "ess")}
                    for level, p in reached.items()
                },
            }
        )
    for axis in (by_time, by_energy):
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
    by_time.set_xlabel("training wall time [min]")
    by_energy.set_xlabel("target energy evaluations")
    by_energy.set_xscale("log")
    by_energy.xaxis.set_minor_formatter(NullFormatter())
    by_time.set_ylabel("reverse ESS")
    by_time.legend(fontsize=8)
    by_time.set_title(
        "dots: pretraining batches (t_high); o: rung buffers; *: final sample", fontsize=8
    )
    figure.tight_layout()
    figure.savefig(args.out, dpi=130)
    print(f"figure: {args.out}")
    if args.json_out:
        args.json_out.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
