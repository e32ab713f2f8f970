"""Cumulant GAN and the energy-informed Rényi objective: where each covers modes, where each loses.

Parts (each trains through the package's config path, ``train_run``, from the shipped templates):

- ``mixture``: cumulant GAN on the 8-mode Gaussian mixture (uniform and skewed 1:...:8 weights)
  over the (beta, gamma) grid {0, 0.5, 1}^2 ((0, 0) with the gradient penalty), 3 seeds, from 20k
  exact samples: modes found (a mode holds >= 10 % of its true mass), total variation of the mode
  masses, KL(P||Q) by a 40 x 40 histogram on [-5, 5]^2, reverse ESS against the true density.
- ``renyi``: the Rényi objective at a in {0 (reverse KL), 0.25, 0.5, 0.9} on the uniform mixture at
  its own temperature, and TA-BG (T 4 -> 1) at the same energy budget, 3 seeds: the same metrics
  and the energy evaluations.
- ``ising``: 8 x 8 Ising at beta = 0.44, PixelCNN generator, Swendsen-Wang data: cumulant GAN at
  two (beta, gamma), maximum likelihood (forward KL) on the same data and VAN (reverse KL), equal
  steps: F_q per site vs Kaufman's exact F, ESS, <|m|> and energy per site vs the data.
- ``alanine``: alanine dipeptide at 300 K from a reference MD dataset (``--reference DIR``, made by
  ``boltzgen reference``): cumulant GAN at two (beta, gamma) vs forward KL at equal steps, and
  Rényi at a in {0, 0.5, 0.9}: ESS, NLL on the test split, basin populations reweighted vs the MD
  reference, Ramachandran figure.

Run: ``python analysis/gan_study.py [--parts mixture renyi ising alanine] [--workers 2]
[--reference DIR]``; results merge into ``analysis/gan_study_results.json`` (parts can run
separately) and ``docs/gan_study.md`` + ``docs/figures/gan_*.png`` are rewritten from all results.
``--quick`` runs a smoke version into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from boltzgen.energy.toy import GaussianMixture2D
from boltzgen.io import load_samples
from boltzgen.workflow.config import apply_overrides, parse_config_text
from boltzgen.workflow.runs import train_run
from boltzgen.workflow.templates import template_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "analysis" / "gan_study_results.json"
DOC = ROOT / "docs" / "gan_study.md"
FIGURES = ROOT / "docs" / "figures"
GRID = [(b, g) for b in (0.0, 0.5, 1.0) for g in (0.0, 0.5, 1.0)]
ALPHAS = (0.0, 0.25, 0.5, 0.9)
SEEDS = (0, 1, 2)
#: The Ramachandran basins of :func:`boltzgen.molecule.ramachandran.basin_populations`.
BASINS = ("C7eq/C5", "alphaR", "alphaL")


# -- jobs ---------------------------------------------------------------------------------------
def _config(template: str, overrides: list[str], trainer: dict | None = None) -> dict:
    """The template with ``overrides``; ``trainer`` replaces its whole ``[trainer]`` table."""
    config = parse_config_text(template_text(template))
    if trainer is not None:
        config["trainer"] = trainer
    return apply_overrides(config, ['device="cpu"', *overrides])


def _run(job: dict[str, Any]) -> dict[str, Any]:
    """Train one config (one thread; a finished run directory resumes at its last step and is
    only sampled again) and measure it; returns the job plus its metrics, with the training
    wall time that the run's summary records."""
    torch.set_num_threads(1)
    run_dir = Path(job["run_dir"])
    summary = train_run(job["config"], run_dir, progress=False)
    result = {k: v for k, v in job.items() if k != "config"}
    result.update(
        wall_time_s=summary["wall_time_s"],
        ess=summary["ess"],
        energy_evaluations=summary["energy_evaluations"],
    )
    if job["part"] == "alanine":  # a molecule's samples are a trajectory, not samples.pt
        result.update(_alanine_metrics(run_dir, job["reference"]))
        return result
    samples = load_samples(run_dir / "samples" / "samples.pt").double()
    if job["part"] == "ising":
        result.update(_ising_metrics(summary, samples))
    else:
        result.update(_mixture_metrics(job["weights"], samples))
    return result


def _mixture_target(weights: str) -> GaussianMixture2D:
    w = None if weights == "uniform" else GaussianMixture2D.skewed_weights(8)
    return GaussianMixture2D(weights=w)


def _mixture_metrics(weights: str, samples: torch.Tensor) -> dict[str, Any]:
    target = _mixture_target(weights)
    truth = target.log_weights.exp()
    masses = torch.bincount(target.mode_index(samples), minlength=8).double() / len(samples)
    edges = torch.linspace(-5, 5, 41, dtype=torch.float64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)
    p = torch.exp(-target.energy(grid))
    p = p / p.sum()
    counts, _, _ = np.histogram2d(
        samples[:, 0].numpy(), samples[:, 1].numpy(), bins=[edges.numpy(), edges.numpy()]
    )
    q = torch.as_tensor(counts.reshape(-1) + 0.5) / (counts.sum() + 0.5 * counts.size)
    kl = float((p * (p.log() - q.log())).sum())
    return {
        "modes_found": int((masses >= 0.1 * truth).sum()),
        "mode_tv": float(0.5 * (masses - truth).abs().sum()),
        "histogram_kl": kl,
        "masses": masses.tolist(),
    }


def _ising_metrics(summary: dict[str, Any], samples: torch.Tensor) -> dict[str, Any]:
    from boltzgen.energy.lattice import IsingModel2D

    target = IsingModel2D(8, 0.44).double()
    m = samples.mean(1).abs()
    energy = target.energy(samples) / (0.44 * 64)
    return {
        "free_energy_per_site": summary.get("free_energy_per_site"),
        "free_energy_standard_error": summary.get("free_energy_standard_error"),
        "exact_free_energy_per_site": summary.get("exact_free_energy_per_site"),
        "free_energy_error": summary.get("free_energy_error"),
        "abs_magnetization": float(m.mean()),
        "energy_per_site": float(energy.mean()),
    }


def _alanine_metrics(run_dir: Path, reference: str) -> dict[str, Any]:
    from boltzgen.molecule.ramachandran import backbone_dihedrals, basin_populations
    from boltzgen.workflow.evaluation import evaluate_run
    from boltzgen.workflow.runs import load_run
    from boltzgen.workflow.sampling import draw_samples

    report = evaluate_run(run_dir, 20_000, reference=Path(reference) / "test.npz")
    _, target, model = load_run(run_dir)
    torch.manual_seed(1)
    drawn = draw_samples(model, target, 20_000, 300.0)
    phi, psi = backbone_dihedrals(drawn["samples"].double().numpy(), target.molecule.topology)
    log_w = drawn["log_weights"].double()
    weights = torch.exp(log_w - log_w[torch.isfinite(log_w)].max()).nan_to_num(0.0).numpy()
    np.savez(run_dir / "dihedrals.npz", phi=phi[:, 0], psi=psi[:, 0], weights=weights)
    return {
        "ess_evaluated": report["ess"],
        "nll": report["nll"],
        "nll_standard_error": report["nll_standard_error"],
        "forward_ess": report["forward_ess"],
        "basins": basin_populations(phi[:, 0], psi[:, 0]),
        "basins_reweighted": basin_populations(phi[:, 0], psi[:, 0], weights),
    }


def _jobs(part: str, folder: Path, quick: bool, reference: str | None) -> list[dict[str, Any]]:
    seeds = SEEDS[:1] if quick else SEEDS
    steps = 20 if quick else None
    jobs: list[dict[str, Any]] = []

    def add(
        name: str, template: str, overrides: list[str], trainer: dict | None = None, **labels: Any
    ) -> None:
        if steps is not None:
            length = "pretrain_steps" if trainer and trainer["name"] == "tabg" else "steps"
            overrides = [*overrides, f"trainer.{length}={steps}", "sample.n=500"]
        jobs.append(
            {
                "part": part,
                "name": name,
                "run_dir": str(folder / part / name),
                "config": _config(template, overrides, trainer),
                **labels,
            }
        )

    if part == "mixture":
        for weights in ("uniform", "skewed"):
            for beta, gamma in GRID:
                lipschitz = "gp" if beta == gamma == 0 else "none"
                for seed in seeds:
                    add(
                        f"{weights}-b{beta}-g{gamma}-s{seed}",
                        "gan-gaussian-mixture",
                        [
                            f'target.weights="{weights}"',
                            f"trainer.beta={beta}",
                            f"trainer.gamma={gamma}",
                            f'trainer.lipschitz="{lipschitz}"',
                            "trainer.steps=1000",
                            "trainer.d_steps=1",
                            f"seed={seed}",
                            f"trainer.d_seed={seed}",
                            "sample.n=20000",
                        ],
                        weights=weights,
                        beta=beta,
                        gamma=gamma,
                        seed=seed,
                    )
    elif part == "renyi":
        flow = [
            "model.n_layers=6",
            "model.hidden=64",
            "model.prior_scale=2.0",
            "sample.n=20000",
        ]
        for alpha in ALPHAS:
            for seed in seeds:
                add(
                    f"renyi-a{alpha}-s{seed}",
                    "toy-reverse-kl",
                    [*flow, f"seed={seed}"],
                    trainer={
                        "name": "renyi",
                        "alpha": alpha,
                        "steps": 1500,
                        "batch_size": 256,
                        "lr": 1e-3,
                        "warmup_steps": 50,
                    },
                    weights="uniform",
                    method=f"renyi a={alpha}",
                    alpha=alpha,
                    seed=seed,
                )
        for seed in seeds:
            # TA-BG at the same budget: 600 x 256 pretraining at T = 4 + 3 buffers of 76,800
            add(
                f"tabg-s{seed}",
                "toy-reverse-kl",
                [*flow, f"seed={seed}"],
                trainer={
                    "name": "tabg",
                    "t_high": 4.0,
                    "t_low": 1.0,
                    "n_rungs": 3,
                    "extra_final_rungs": 0,
                    "pretrain_steps": 600,
                    "pretrain_batch_size": 256,
                    "buffer_samples": 76800,
                    "resample_size": 20000,
                    "rung_steps": 300,
                    "rung_batch_size": 256,
                },
                weights="uniform",
                method="tabg",
                alpha=None,
                seed=seed,
            )
    elif part == "ising":
        for label, gamma, beta in (("gan b0.5 g0.5", 0.5, 0.5), ("gan b0 g1", 1.0, 0.0)):
            add(
                label.replace(" ", "-"),
                "gan-ising",
                [f"trainer.beta={beta}", f"trainer.gamma={gamma}"],
                method=label,
            )
        add(
            "forward-kl",
            "van-ising",
            [],
            trainer={
                "name": "forward-kl-pcd",
                "steps": 800,
                "batch_size": 256,
                "lr": 2e-3,
                "min_lr_factor": 0.1,
                "grad_clip": 10.0,
                "data": "mcmc",
                "n_data": 20000,
            },
            method="forward KL (ML)",
        )
        add("van", "van-ising", [], method="reverse KL (VAN)")
    elif part == "alanine":
        if reference is None:
            raise SystemExit(
                "--reference DIR (a boltzgen reference dataset) is needed for alanine"
            )
        train = f'trainer.data="{Path(reference) / "train.npz"}"'
        short = ["trainer.steps=2000", "trainer.batch_size=256", "trainer.log_every=100"]
        for label, beta, gamma in (("gan b0.5 g0.5", 0.5, 0.5), ("gan b0 g1", 0.0, 1.0)):
            add(
                label.replace(" ", "-"),
                "gan-alanine-dipeptide",
                [
                    train,
                    *short,
                    f"trainer.beta={beta}",
                    f"trainer.gamma={gamma}",
                    "sample.n=20000",
                ],
                method=label,
                reference=reference,
            )
        add(
            "forward-kl",
            "forward-kl-alanine-dipeptide",
            [
                train,
                *short,
                "trainer.lr=5e-4",
                "trainer.warmup_steps=200",
                "model.n_layers=8",
                "model.hidden=128",
                "model.depth=3",
                "sample.n=20000",
            ],
            method="forward KL",
            reference=reference,
        )
        for alpha in (0.0, 0.5, 0.9):
            add(
                f"renyi-a{alpha}",
                "renyi-alanine-dipeptide",
                [*short, f"trainer.alpha={alpha}", "sample.n=20000"],
                method=f"renyi a={alpha}",
                reference=reference,
            )
    return jobs


# -- tables and figures ---------------------------------------------------------------------------
def _row(*cells: Any) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _mean_se(values: list[float]) -> str:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:.3g}"
    return f"{v.mean():.3g} ± {v.std(ddof=1) / math.sqrt(len(v)):.2g}"


def _mixture_tables(results: list[dict]) -> list[str]:
    lines = []
    for weights in ("uniform", "skewed"):
        rows = [r for r in results if r["part"] == "mixture" and r["weights"] == weights]
        if not rows:
            continue
        lines += [
            f"### Cumulant GAN on the 8-mode mixture, {weights} weights",
            "",
            _row("beta", "gamma", "a", "modes found (of 8)", "mode-mass TV", "hist. KL(P‖Q)")[:-1]
            + "| ESS | s/run |",
            "|---:|---:|---:|---|---|---|---|---:|",
        ]
        for beta, gamma in GRID:
            cell = [r for r in rows if r["beta"] == beta and r["gamma"] == gamma]
            if not cell:
                continue
            a = "W1" if beta == gamma == 0 else f"{gamma / (beta + gamma):.2f}"
            found = "/".join(str(r["modes_found"]) for r in cell)
            lines.append(
                f"| {beta} | {gamma} | {a} | {found} | {_mean_se([r['mode_tv'] for r in cell])} "
                f"| {_mean_se([r['histogram_kl'] for r in cell])} "
                f"| {_mean_se([r['ess'] for r in cell])} "
                f"| {np.mean([r['wall_time_s'] for r in cell]):.0f} |"
            )
        lines.append("")
    return lines


def _renyi_table(results: list[dict]) -> list[str]:
    rows = [r for r in results if r["part"] == "renyi"]
    if not rows:
        return []
    lines = [
        "### Energy-informed Rényi vs reverse KL vs TA-BG, uniform mixture at T = 1",
        "",
        _row("method", "modes found (of 8)", "mode-mass TV", "hist. KL(P‖Q)", "ESS")
        + " energy evaluations | s/run |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for method in [f"renyi a={a}" for a in ALPHAS] + ["tabg"]:
        cell = [r for r in rows if r["method"] == method]
        if not cell:
            continue
        label = "reverse KL (renyi a=0)" if method == "renyi a=0.0" else method
        lines.append(
            _row(
                label,
                "/".join(str(r["modes_found"]) for r in cell),
                _mean_se([r["mode_tv"] for r in cell]),
                _mean_se([r["histogram_kl"] for r in cell]),
                _mean_se([r["ess"] for r in cell]),
                f"{cell[0]['energy_evaluations']:,}",
                f"{np.mean([r['wall_time_s'] for r in cell]):.0f}",
            )
        )
    return [*lines, ""]


def _ising_table(results: list[dict]) -> list[str]:
    rows = [r for r in results if r["part"] == "ising"]
    if not rows:
        return []
    lines = [
        "### Ising 8 x 8, beta = 0.44, PixelCNN, 800 steps x 256",
        "",
        _row("method", "F_q per site (s.e.)", "exact F", "F_q - F", "ESS", "<abs m>")
        + " energy per site | s |",
        "|---|---|---|---|---|---|---|---:|",
    ]
    for r in rows:
        lines.append(
            _row(
                r["method"],
                f"{r['free_energy_per_site']:.5f} ({r['free_energy_standard_error']:.1g})",
                f"{r['exact_free_energy_per_site']:.5f}",
                f"{r['free_energy_error']:.4f}",
                f"{r['ess']:.3f}",
                f"{r['abs_magnetization']:.3f}",
                f"{r['energy_per_site']:.4f}",
                f"{r['wall_time_s']:.0f}",
            )
        )
    return [*lines, ""]


def _alanine_table(results: list[dict], reference: dict | None) -> list[str]:
    rows = [r for r in results if r["part"] == "alanine"]
    if not rows:
        return []
    lines = [
        "### Alanine dipeptide, 300 K, 2000 steps x 256",
        "",
        "| method | ESS | NLL (test) | C7eq | alphaR | alphaL | energy evaluations | s |",
        "|---|---|---|---|---|---|---:|---:|",
    ]
    if reference:
        lines.append(
            _row(
                "MD reference",
                "",
                "",
                *(f"{100 * reference[k]:.2f} %" for k in BASINS),
                "",
                "",
            )
        )
    for r in rows:
        b = r["basins_reweighted"]
        nll = "n/a" if r["nll"] is None else f"{r['nll']:.2f} ± {r['nll_standard_error']:.2f}"
        lines.append(
            _row(
                r["method"],
                f"{r['ess']:.3g}",
                nll,
                *(f"{100 * b[k]:.2f} %" for k in BASINS),
                f"{r['energy_evaluations']:,}",
                f"{r['wall_time_s']:.0f}",
            )
        )
    return [*lines, ""]


def _figures(results: list[dict], folder: Path) -> list[str]:
    FIGURES.mkdir(parents=True, exist_ok=True)
    made = []
    for part, weights in (("mixture", "uniform"), ("mixture", "skewed")):
        rows = [
            r for r in results if r["part"] == part and r["weights"] == weights and r["seed"] == 0
        ]
        if len(rows) < len(GRID):
            continue
        figure, axes = plt.subplots(3, 3, figsize=(9, 9), sharex=True, sharey=True)
        for r in rows:
            i, j = (0.0, 0.5, 1.0).index(r["beta"]), (0.0, 0.5, 1.0).index(r["gamma"])
            run_dir = Path(r["run_dir"])
            if not (run_dir / "samples" / "samples.pt").is_file():
                continue
            x = load_samples(run_dir / "samples" / "samples.pt")[:5000].numpy()
            axes[i, j].scatter(x[:, 0], x[:, 1], s=1, alpha=0.3)
            axes[i, j].set_title(
                f"β={r['beta']}, γ={r['gamma']}: {r['modes_found']} modes", fontsize=9
            )
            axes[i, j].set_xlim(-5, 5)
            axes[i, j].set_ylim(-5, 5)
        figure.suptitle(f"cumulant GAN samples, 8-mode mixture ({weights} weights), seed 0")
        path = FIGURES / f"gan_mixture_{weights}.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        made.append(f"![{weights} mixture grid](figures/{path.name})")
    rows = [r for r in results if r["part"] == "alanine"]
    if rows and all((Path(r["run_dir"]) / "dihedrals.npz").is_file() for r in rows):
        figure, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.4), sharey=True)
        for axis, r in zip(np.atleast_1d(axes), rows):
            d = np.load(Path(r["run_dir"]) / "dihedrals.npz")
            axis.hist2d(
                d["phi"],
                d["psi"],
                bins=60,
                range=[[-np.pi, np.pi]] * 2,
                weights=d["weights"],
                cmin=1e-12,
            )
            axis.set_title(r["method"], fontsize=9)
            axis.set_xlabel("phi")
        np.atleast_1d(axes)[0].set_ylabel("psi")
        figure.suptitle("alanine dipeptide 300 K: reweighted Ramachandran")
        figure.tight_layout()
        path = FIGURES / "gan_alanine_ramachandran.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        made.append(f"![alanine Ramachandran](figures/{path.name})")
    return made


def write_doc(results: list[dict], meta: dict[str, Any]) -> None:
    lines = [
        "# Cumulant GAN and Rényi study (generated)",
        "",
        "Written by `python analysis/gan_study.py` (see its docstring for the protocol); "
        "discussion in [the GAN page](gan.md). Machine: "
        f"{meta.get('machine', 'n/a')}; one torch thread per run, {meta.get('workers', 2)} runs "
        "at a time. Cells list every seed's modes found; other cells give the mean ± s.e. over "
        "seeds.",
        "",
        *_mixture_tables(results),
        *_renyi_table(results),
        *_ising_table(results),
        *_alanine_table(results, meta.get("alanine_reference_basins")),
        *_figures(results, DOC.parent),
        "",
    ]
    DOC.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["mixture", "renyi", "ising"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reference", default=None, help="boltzgen reference dataset folder")
    parser.add_argument("--folder", default=None, help="run directories (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="a smoke run; writes nothing in docs")
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="gan_study_"))
    jobs = [job for part in args.parts for job in _jobs(part, folder, args.quick, args.reference)]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = []
        for result in pool.map(_run, jobs):
            results.append(result)
            print(
                f"{result['part']:8s} {result['name']:28s} ESS {result['ess']:.3f} "
                f"{result['wall_time_s']:.0f} s",
                flush=True,
            )
    print(f"{len(jobs)} runs in {time.perf_counter() - started:.0f} s")
    if args.quick:
        return
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"results": [], "meta": {}}
    kept = [r for r in stored["results"] if r["part"] not in args.parts]
    meta = stored["meta"]
    meta.update(workers=args.workers, machine="2-core x86_64 CPU VM, no GPU")
    if "alanine" in args.parts and args.reference:
        from boltzgen.md.datasets import load_reference
        from boltzgen.molecule.ramachandran import basin_populations

        frames = [load_reference(args.reference, split) for split in ("train", "val", "test")]
        phi = np.concatenate([f["phi"][:, 0] for f in frames])
        psi = np.concatenate([f["psi"][:, 0] for f in frames])
        meta["alanine_reference_basins"] = basin_populations(phi, psi)
    merged = kept + results
    RESULTS.write_text(json.dumps({"results": merged, "meta": meta}, indent=1))
    write_doc(merged, meta)
    print(f"wrote {RESULTS} and {DOC}")


if __name__ == "__main__":
    main()
