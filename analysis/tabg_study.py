"""Reproduction study: TA-BG vs reverse KL at 300 K vs forward KL on alanine dipeptide.

Trains the three methods with the same flow and equal budgets of target-energy evaluations during
training (buffer generation included, evaluation samples excluded; the MD that produced the
forward-KL data is reported separately), evaluates each with ``boltzgen evaluate``'s metrics
against a reference MD dataset, and writes a markdown table next to the published numbers
(von Klitzing et al. 2025, Table 1) plus the Ramachandran figures.

The baselines copy TA-BG's stage-1 optimizer settings (batch, learning rate, warm-up, weight
decay, gradient clipping, dropped top energies): reverse KL runs at 300 K for
``budget // batch`` steps, forward KL takes as many steps on the reference ``train.npz``.

    python analysis/tabg_study.py --preset paper --reference reference/alanine-dipeptide \
        --out docs/tabg_study            # GPU: the published protocol (hours on one H100)
    python analysis/tabg_study.py --preset gpu-fast ...   # GPU, minutes (unvalidated)
    python analysis/tabg_study.py --preset cpu -n 200000 ...   # 2 CPU cores, hours

A run directory that already holds ``summary.json`` (for example a TA-BG run trained earlier with
``boltzgen train`` on the same preset) is evaluated, not retrained; ``--methods`` runs a subset,
and results of earlier invocations in ``OUT/results.json`` stay in the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from boltzgen.diagnostics.plots import save_figure
from boltzgen.diagnostics.report import RunData, load_reference, load_run_data, run_figure
from boltzgen.io import atomic_write_text
from boltzgen.md.datasets import read_metadata
from boltzgen.molecule.ramachandran import backbone_dihedrals, basin_populations
from boltzgen.samplers.weights import self_normalized_weights
from boltzgen.workflow.config import parse_config_text
from boltzgen.workflow.evaluation import evaluate_run
from boltzgen.workflow.runs import train_run
from boltzgen.workflow.templates import template_text

METHODS = {"tabg": "TA-BG", "reverse": "reverse KL 300 K", "forward": "forward KL (MD data)"}

PUBLISHED = [  # von Klitzing et al. 2025, Table 1 (mean of 4 runs), alanine dipeptide
    ("reverse KL (published)", "2.56e8", "94.13%", "1.36e-2"),
    ("FAB (published)", "2.13e8", "94.80%", "1.03e-2"),
    ("TA-BG (published)", "1e8", "95.76%", "1.24e-2"),
    ("CMT (published)", "1e8", "97.69%", "0.94e-2"),
]

#: TA-BG stage-1 settings the baselines inherit (baseline key -> TA-BG key).
SHARED_OPTIMIZER = {
    "batch_size": "pretrain_batch_size",
    "lr": "pretrain_lr",
    "warmup_steps": "pretrain_warmup_steps",
    "weight_decay": "weight_decay",
    "grad_clip": "grad_clip",
}


def budget_of(tabg: dict[str, Any]) -> int:
    """Target-energy evaluations of a TA-BG trainer config: pretraining batches plus every buffer
    sample."""
    rungs = tabg["n_rungs"] + tabg["extra_final_rungs"]
    return tabg["pretrain_steps"] * tabg["pretrain_batch_size"] + rungs * tabg["buffer_samples"]


def configs(preset: str, reference: Path) -> dict[str, dict[str, Any]]:
    """Config per method key of ``METHODS``: same model, equal energy budgets, TA-BG's optimizer
    settings."""
    tabg = parse_config_text(template_text(f"tabg-alanine-dipeptide-{preset}"))
    schedule = tabg["trainer"]
    steps = max(budget_of(schedule) // schedule["pretrain_batch_size"], 1)
    shared = {key: schedule[tabg_key] for key, tabg_key in SHARED_OPTIMIZER.items()}
    shared.update(
        steps=steps, log_every=schedule["log_every"], checkpoint_every=schedule["checkpoint_every"]
    )
    reverse = parse_config_text(template_text("reverse-kl-alanine-dipeptide"))
    reverse["trainer"].update(
        shared, temperature=schedule["t_low"], drop_top_k=schedule["drop_top_k"]
    )
    forward = parse_config_text(template_text("forward-kl-alanine-dipeptide"))
    forward["trainer"].update(shared, data=str(reference / "train.npz"))
    for baseline in (reverse, forward):
        baseline["model"] = dict(tabg["model"])
        baseline["sample"] = dict(tabg["sample"])
    return {"tabg": tabg, "reverse": reverse, "forward": forward}


def trained_summary(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The finished run's summary if ``run_dir`` holds one, else train (resuming a checkpoint
    there)."""
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        print(f"{run_dir}: finished run found, evaluating it")
        return json.loads(summary_path.read_text())
    return train_run(config, run_dir)


def sample_basins(run: RunData) -> dict[str, dict[str, float]]:
    """Basin populations of a run's final flow samples: ``plain`` and ``reweighted`` to the
    target."""
    phi, psi = backbone_dihedrals(run.samples)
    weights = self_normalized_weights(run.log_weights)
    return {
        "plain": basin_populations(phi[:, 0], psi[:, 0]),
        "reweighted": basin_populations(phi[:, 0], psi[:, 0], weights),
    }


def table_row(method: str, result: dict[str, Any]) -> tuple[str, ...]:
    """One markdown row (columns of :func:`write_table`)."""
    summary, metrics, basins = result["summary"], result["metrics"], result["basins"]

    def first(key: str) -> str:
        values = metrics.get(key)
        return f"{values[0]:.3g}" if values else "n/a"

    def optional(key: str, form: str) -> str:
        return format(metrics[key], form) if metrics.get(key) is not None else "n/a"

    alpha_l = (
        f"{100 * basins['plain']['alphaL']:.2f}% / {100 * basins['reweighted']['alphaL']:.2f}%"
    )
    return (
        METHODS[method],
        f"{summary['energy_evaluations']:.3g}",
        f"{100 * metrics['ess']:.1f}%",
        f"{100 * metrics['forward_ess']:.1f}%"
        if metrics.get("forward_ess") is not None
        else "n/a",
        optional("nll", ".2f"),
        first("ramachandran_tv_reweighted"),
        first("ramachandran_tv"),
        first("ramachandran_tv_floor"),
        alpha_l,
        f"{summary['wall_time_s'] / 60:.0f} min",
        summary["device"],
    )


def write_table(out: Path, preset: str, n: int, reference: Path, results: dict[str, Any]) -> str:
    """Write ``OUT/README.md`` from all results (fixed method order) and return its text."""
    metadata = read_metadata(reference)
    md_alpha = metadata["basin_populations"]["alphaL"]
    header = (
        "| method | energy evals | ESS | forward ESS | NLL | Ram. TV (reweighted) | Ram. TV "
        "(plain) | "
        "MD split-half TV floor | alphaL flow / reweighted | wall time | device |"
    )
    lines = [
        f"# TA-BG reproduction study ({preset} preset)",
        "",
        f"Flow samples per evaluation: {n}; reference: `{reference}` (test split: "
        f"{metadata['frames']['test']} frames; "
        f"alphaL population of all {sum(metadata['frames'].values())} MD frames: "
        f"{100 * md_alpha:.2f}%). "
        "alphaL columns: the run's final samples (`summary.json`'s `n_samples`), plain and "
        "importance-reweighted.",
        "",
        header,
        "|" + "---|" * 11,
    ]
    lines += ["| " + " | ".join(table_row(m, results[m])) + " |" for m in METHODS if m in results]
    lines += [
        "| "
        + " | ".join(
            (name, evals, ess, "", "", tv, "", "~1.1e-2 (1e6 vs 1e7)", "", "", "published")
        )
        + " |"
        for name, evals, ess, tv in PUBLISHED
    ]
    lines += ["", "## Ramachandran plots (flow, reweighted flow, MD test split, difference)", ""]
    lines += [
        f"![{METHODS[m]}: Ramachandran comparison with the MD test split]"
        f"(ramachandran_{Path(results[m]['run_dir']).name}.png)"
        for m in METHODS
        if m in results and "run_dir" in results[m]
    ]
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "README.md", text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=("paper", "gpu-fast", "cpu"), default="cpu")
    parser.add_argument(
        "--reference",
        type=Path,
        required=True,
        help="folder from 'boltzgen reference alanine-dipeptide'",
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        choices=tuple(METHODS),
        default=list(METHODS),
        help=(
            "methods to train (if needed) and evaluate (default all; none: only rebuild the table)"
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("docs/tabg_study"))
    parser.add_argument("--runs", type=Path, default=Path("runs/tabg_study"))
    parser.add_argument(
        "-n", type=int, default=1_000_000, help="flow samples per evaluation (published: 1e6)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    test_set = args.reference / "test.npz"
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    all_configs = configs(args.preset, args.reference)
    for method in args.methods:
        run_dir = args.runs / f"{args.preset}-{method}"
        summary = trained_summary(all_configs[method], run_dir)
        metrics = evaluate_run(run_dir, args.n, reference=test_set)
        run = load_run_data(run_dir)
        results[method] = {
            "summary": summary,
            "metrics": metrics,
            "basins": sample_basins(run),
            "run_dir": str(run_dir),
        }
        figure, data = run_figure(run, "ramachandran", load_reference(test_set))
        save_figure(figure, args.out / f"ramachandran_{run_dir.name}.png", data)
        atomic_write_text(results_path, json.dumps(results, indent=2, default=str) + "\n")
    print(write_table(args.out, args.preset, args.n, args.reference, results))


if __name__ == "__main__":
    main()
