"""Reproduction study: TA-BG vs reverse KL at 300 K vs forward KL on alanine dipeptide.

Trains the three methods with equal budgets of target-energy evaluations during training
(buffer generation included, evaluation samples excluded; the MD that produced the forward-KL
data is reported separately), evaluates each with ``boltzgen evaluate``'s metrics against a
reference MD dataset, and writes a markdown table next to the published numbers (DESIGN.md
section 8, von Klitzing et al. 2025, Table 1) plus the Ramachandran figures.

    python analysis/tabg_study.py --preset paper --reference reference/alanine-dipeptide \
        --out docs/tabg_study            # GPU: the published protocol (hours on one H100)
    python analysis/tabg_study.py --preset gpu-fast ...   # GPU, minutes (unvalidated)
    python analysis/tabg_study.py --preset cpu ...        # 2 CPU cores, hours

The reference is a folder written by ``boltzgen reference alanine-dipeptide`` (its
``train.npz`` feeds forward KL, its ``test.npz`` the metrics).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from boltzgen.commands.evaluate import evaluate_run
from boltzgen.commands.init import template_text
from boltzgen.config import apply_overrides, parse_config_text
from boltzgen.diagnostics.report import load_reference, load_run_data, run_figure
from boltzgen.diagnostics.plots import save_figure
from boltzgen.runs import train_run

PUBLISHED = [  # von Klitzing et al. 2025, Table 1 (mean of 4 runs), alanine dipeptide
    ("reverse KL (published)", "2.56e8", "94.13%", "1.36e-2"),
    ("FAB (published)", "2.13e8", "94.80%", "1.03e-2"),
    ("TA-BG (published)", "1e8", "95.76%", "1.24e-2"),
    ("CMT (published)", "1e8", "97.69%", "0.94e-2"),
]


def budget_of(tabg: dict[str, Any]) -> int:
    """Target-energy evaluations of a TA-BG config: pretraining batches plus every buffer sample."""
    rungs = tabg["n_rungs"] + tabg["extra_final_rungs"]
    return tabg["pretrain_steps"] * tabg["pretrain_batch_size"] + rungs * tabg["buffer_samples"]


def configs(preset: str, reference: Path) -> dict[str, dict[str, Any]]:
    """The three configs with equal energy-evaluation budgets (reverse KL gets TA-BG's budget)."""
    tabg = parse_config_text(template_text(f"tabg-alanine-dipeptide-{preset}"))
    budget = budget_of(tabg["trainer"])
    reverse = parse_config_text(template_text("reverse-kl-alanine-dipeptide"))
    reverse["model"] = dict(tabg["model"])
    batch = reverse["trainer"]["batch_size"]
    reverse = apply_overrides(reverse, [f"trainer.steps={max(budget // batch, 1)}"])
    forward = parse_config_text(template_text("forward-kl-alanine-dipeptide"))
    forward["model"] = dict(tabg["model"])
    forward = apply_overrides(forward, [f'trainer.data="{reference / "train.npz"}"', f"trainer.steps={reverse['trainer']['steps']}"])
    for config in (tabg, reverse, forward):
        config["sample"] = {"n": tabg["sample"]["n"]}
    return {"TA-BG": tabg, "reverse KL 300 K": reverse, "forward KL (MD data)": forward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("paper", "gpu-fast", "cpu"), default="cpu")
    parser.add_argument("--reference", type=Path, required=True, help="folder from 'boltzgen reference alanine-dipeptide'")
    parser.add_argument("--out", type=Path, default=Path("docs/tabg_study"))
    parser.add_argument("--runs", type=Path, default=Path("runs/tabg_study"))
    parser.add_argument("-n", type=int, default=1_000_000, help="flow samples per evaluation (published: 1e6)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    test_set = args.reference / "test.npz"
    rows, results = [], {}
    for method, config in configs(args.preset, args.reference).items():
        run_dir = args.runs / f"{args.preset}-{method.split()[0].lower().replace('-', '')}"
        summary = train_run(config, run_dir)
        metrics = evaluate_run(run_dir, args.n, reference=test_set)
        results[method] = {"summary": summary, "metrics": metrics, "run_dir": str(run_dir)}
        tv = metrics["ramachandran_tv_reweighted"]
        floor = metrics["ramachandran_tv_floor"]
        rows.append((method, f"{summary['energy_evaluations']:.3g}", f"{100 * metrics['ess']:.2f}%",
                     f"{tv[0]:.3g}" if tv else "n/a", f"{floor[0]:.3g}" if floor else "n/a",
                     f"{metrics['nll']:.3f}" if metrics["nll"] is not None else "n/a",
                     f"{summary['wall_time_s']:.0f} s", summary["device"]))
        run = load_run_data(run_dir)
        figure, data = run_figure(run, "ramachandran", load_reference(test_set))
        save_figure(figure, args.out / f"ramachandran_{run_dir.name}.png", data)
    header = "| method | energy evals | ESS | Ram TV (reweighted) | MD split-half TV floor | NLL | wall time | device |"
    lines = [f"# TA-BG reproduction study ({args.preset} preset)", "", f"Flow samples: {args.n}; reference: {test_set}.", "",
             header, "|" + "---|" * 8]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["| " + " | ".join((name, evals, ess, tv, "~1.1e-2 at 1e7", "", "", "published")) + " |" for name, evals, ess, tv in PUBLISHED]
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
