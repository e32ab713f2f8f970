"""Federated study on two Ising domains: FedAvg against FedAvg + forward / reverse distillation
from the global model and DKDR (dynamic forward/reverse distillation from decoupled domain
experts), by the exact KL of the global model to each domain and to the pooled distribution.

Every method trains the ``federate-ising`` template (4 x 4 Ising torus at beta = 0.5, fields
h = +0.3 and -0.3: the pooled distribution has two peaks) with ``--clients`` clients in one
process (``boltzgen federate --simulate``, which gives the run of one client per process), one
thread per run, ``--jobs`` runs side by side. Prints a markdown table of the final round.

Usage::

    python analysis/federated_study.py --out runs/federated-study --clients 4 --jobs 2 \\
        [--rounds 30] [--json-out analysis/federated_study_results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

#: (label, teachers, divergence) of the compared methods.
METHODS = (
    ("FedAvg", "none", "forward"),
    ("FedAvg + forward KD", "global", "forward"),
    ("FedAvg + reverse KD", "global", "reverse"),
    ("experts + forward KD", "experts", "forward"),
    ("DKDR (experts + dynamic weights)", "experts", "dkdr"),
)


def run_method(out: Path, label: str, teachers: str, divergence: str, args: Any) -> dict:
    """Train one method; its summary with the method's label."""
    run = out / f"{teachers}-{divergence}"
    command = [
        sys.executable,
        "-m",
        "boltzgen",
        "federate",
        "--simulate",
        "--clients",
        str(args.clients),
        "--no-progress",
        "--json",
        f"--set=trainer.teachers={json.dumps(teachers)}",
        f"--set=trainer.divergence={json.dumps(divergence)}",
        f"--set=trainer.rounds={args.rounds}",
        "-o",
        str(run),
        str(args.config),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
    return {"method": label, **json.loads((run / "summary.json").read_text())}


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of the final round's exact KLs (nats)."""
    lines = [
        "| method | KL(p_up ‖ q) | KL(p_down ‖ q) | KL(p_pooled ‖ q) | domain experts | wall |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        experts = row.get("domain_experts", "")
        lines.append(
            f"| {row['method']} | {row['kl_domain_0']:.4f} | {row['kl_domain_1']:.4f} | "
            f"{row['kl_pooled']:.4f} | {experts} | {row['wall_time_s']:.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/federated-study"))
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.config = args.out / "federate-ising.toml"
    template = [sys.executable, "-m", "boltzgen", "init", "federate-ising", "--force"]
    subprocess.run([*template, "-o", str(args.config)], check=True, stdout=subprocess.DEVNULL)
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda m: run_method(args.out, *m, args), METHODS))
    print(table(rows))
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
