"""Distillation study on the 16 x 16 Ising torus: a large autoregressive teacher into a small
student by forward KD, reverse KD, MiniLLM and DKDR, against a student of the same size trained
by plain reverse KL from the energy (VAN), judged against Kaufman's exact free energy.

The teacher is a run of the ``van-ising`` template (reverse KL from the energy) at L = 16 with
per-site conditionals (``z2 = false``, which MiniLLM and DKDR need). Every student has the same
small PixelCNN and the same number of steps and batch size; the distillation students come from
the ``distill-ising`` template, the energy-trained one from ``van-ising``. One thread per run,
``--jobs`` runs side by side. For every model the table gives, from its run's ``summary.json``
and ``samples/samples.pt``:

- ESS to the Ising target and the variational free energy per site F_q = (mean of
  log q + beta E) / (beta N) with its error against Kaufman's exact F (F_q >= F: the error is the
  KL(q||p) per site divided by beta);
- the mode masses: the fraction of the model's own samples with magnetization m > 0 (the target
  gives 0.5 by symmetry; a mode-collapsed model gives ~0 or ~1) and the mean |m| beside the
  target's (the teacher's reweighted estimate);
- the fraction of the model's samples whose teacher log-density is below the teacher's own 1st
  percentile (MiniLLM's claim: reverse KD avoids them, forward KD spreads mass there).

A teacher trained by reverse KL without Z2 symmetry covers one of the two ordered modes, so the
study also distils its Z2-symmetrised copy (the same weights with ``model.z2 = true``: q_sym(s) =
(q(s) + q(-s)) / 2, both modes) by forward and reverse KD (the per-site divergences need
unsymmetrised conditionals), which asks whether forward KD covers both modes and reverse KD
keeps one.

Usage::

    python analysis/distill_ising_study.py runs/ising16-teacher --out runs/ising16-study \\
        --steps 600 --jobs 2 [--json-out analysis/distill_ising_study_results.json]

The teacher run: ``boltzgen init van-ising`` with ``target.L=16 model.z2=false model.width=32
model.depth=4 trainer.steps=1500 sample.n=20000`` (``--teacher-steps`` and ``--train-teacher``
below do it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import torch

from boltzgen.samplers.weights import reverse_ess, self_normalized_weights
from boltzgen.workflow.runs import load_run
from boltzgen.workflow.templates import template_with

#: The teacher: a 4 x 32 PixelCNN on 256 spins near the critical point.
TEACHER = [
    "target.L=16",
    "model.z2=false",
    "model.width=32",
    "model.depth=4",
    "sample.n=20000",
]
#: The student architecture, shared by every student: a 2 x 12 PixelCNN.
STUDENT = [
    'model.name="pixelcnn"',
    "model.depth=2",
    "model.width=12",
    "model.half_kernel_size=3",
    "model.hidden_half_kernel_size=1",
    "model.residual=true",
    "model.periodic=true",
    "model.z2=false",
    "target.L=16",
    "sample.n=20000",
]
#: Student runs: name -> (template, extra overrides).
STUDENTS = {
    "reverse KL from the energy (VAN)": ("van-ising", []),
    "forward KD": ("distill-ising", ['trainer.divergence="forward"']),
    "reverse KD (score function)": ("distill-ising", ['trainer.divergence="reverse"']),
    "MiniLLM": ("distill-ising", ['trainer.divergence="minillm"']),
    "DKDR": ("distill-ising", ['trainer.divergence="dkdr"']),
}
#: Students of the Z2-symmetrised teacher (per-sequence divergences only: its conditionals are
#: not those of q_sym).
Z2_STUDENTS = {
    "forward KD, Z2 teacher": ("distill-ising", ['trainer.divergence="forward"']),
    "reverse KD, Z2 teacher": ("distill-ising", ['trainer.divergence="reverse"']),
}
#: Teacher samples that fix its own 1st log-density percentile.
PERCENTILE_SAMPLES = 20000


def train(template: str, overrides: list[str], run: Path) -> dict[str, Any]:
    """``boltzgen train`` of a template with overrides, one thread; the run's summary (a run
    that has one already is kept: rerunning the study only trains what is missing)."""
    if (run / "summary.json").is_file():
        return json.loads((run / "summary.json").read_text())
    config = run.with_suffix(".toml")
    config.write_text(template_with(template, [*overrides, "trainer.progress=false"]))
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "boltzgen", "train", str(config), "-o", str(run), "--json"]
    subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
    return json.loads((run / "summary.json").read_text())


def magnetization(samples: torch.Tensor) -> torch.Tensor:
    """Magnetization per site of spin configurations in {-1, +1}, shape ``(n,)``."""
    return samples.double().mean(-1)


@torch.no_grad()
def measures(run: Path, teacher: torch.nn.Module, threshold: float) -> dict[str, float]:
    """Mode masses, mean |m| and the teacher-low-density fraction of a run's saved samples."""
    saved = torch.load(run / "samples" / "samples.pt", weights_only=True)
    samples = saved["samples"]
    m = magnetization(samples)
    teacher_log_p = torch.cat([teacher.log_prob(chunk) for chunk in samples.split(4096)])
    return {
        "positive_mode_mass": float((m > 0).double().mean() + 0.5 * (m == 0).double().mean()),
        "mean_abs_m": float(m.abs().mean()),
        "teacher_low_density_fraction": float((teacher_log_p < threshold).double().mean()),
    }


def table(rows: list[dict[str, Any]], exact: float, target_abs_m: float) -> str:
    """The study's markdown table."""
    header = (
        "| model | parameters | training wall | ESS | F_q per site (s.e.) | F_q - F | "
        "mass of m > 0 | mean abs(m) | below teacher's 1st pct |"
    )
    lines = [header, "|" + "---|" * 9]
    for row in rows:
        cells = [
            row["name"],
            f"{row['parameters']:,}",
            f"{row['wall_time_s'] / 60:.1f} min" if row["wall_time_s"] else "(its weights)",
            f"{row['ess']:.3f}",
            f"{row['free_energy_per_site']:.5f} ({row['free_energy_standard_error']:.1e})",
            f"{row['free_energy_error']:.2e}",
            f"{row['positive_mode_mass']:.3f}",
            f"{row['mean_abs_m']:.3f}",
            f"{100 * row['teacher_low_density_fraction']:.1f} %",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        f"| Ising target (exact F; mean abs(m) reweighted from the teacher) | | | | {exact:.5f} "
        f"| | 0.5 | {target_abs_m:.3f} | |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", type=Path, help="the teacher's run directory")
    parser.add_argument("--train-teacher", action="store_true", help="train it first")
    parser.add_argument("--teacher-steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path("runs/ising16-study"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    teacher_dir = args.teacher.resolve()
    if args.train_teacher:
        train("van-ising", [*TEACHER, f"trainer.steps={args.teacher_steps}"], teacher_dir)

    def student(name: str, spec: tuple[str, list[str]], teacher: Path) -> dict[str, Any]:
        template, extra = spec
        run = (args.out / name.split(" (")[0].replace(" ", "-").replace(",", "")).resolve()
        overrides = [*STUDENT, *extra, f"trainer.steps={args.steps}", "trainer.batch_size=256"]
        if template == "distill-ising":
            overrides.append(f'trainer.teacher="{teacher}"')
        train(template, overrides, run)
        return {"name": name, "run": str(run), "teacher": str(teacher)}

    symmetric_dir = symmetrized(teacher_dir, args.out / "teacher-z2")
    work = [(name, spec, teacher_dir) for name, spec in STUDENTS.items()]
    work += [(name, spec, symmetric_dir) for name, spec in Z2_STUDENTS.items()]
    with ThreadPoolExecutor(args.jobs) as pool:
        students = list(pool.map(lambda item: student(*item), work))
    rows = [
        {"name": "teacher", "run": str(teacher_dir), "teacher": str(teacher_dir)},
        {
            "name": "teacher, Z2-symmetrised",
            "run": str(symmetric_dir),
            "teacher": str(symmetric_dir),
        },
        *students,
    ]
    teachers = {
        str(teacher_dir): load_run(teacher_dir)[2],
        str(symmetric_dir): load_run(symmetric_dir)[2],
    }
    thresholds = {key: low_density_threshold(model) for key, model in teachers.items()}
    exact = _summary(teacher_dir)["exact_free_energy_per_site"]
    for row in rows:
        run = Path(row["run"])
        row.update(sample_statistics(run, exact))
        row.update(measures(run, teachers[row["teacher"]], thresholds[row["teacher"]]))
        row["wall_time_s"] = (
            _summary(run)["wall_time_s"] if (run / "summary.json").is_file() else 0.0
        )
        _, _, model = load_run(run)
        row["parameters"] = sum(p.numel() for p in model.parameters())
    saved = torch.load(symmetric_dir / "samples" / "samples.pt", weights_only=True)
    weights = torch.as_tensor(self_normalized_weights(saved["log_weights"]))
    target_abs_m = float((weights * magnetization(saved["samples"]).abs()).sum())
    print(table(rows, exact, target_abs_m))
    if args.json_out:
        result = {"rows": rows, "target_mean_abs_m": target_abs_m, "steps": args.steps}
        args.json_out.write_text(json.dumps(result, indent=2, default=str) + "\n")


def symmetrized(teacher: Path, out: Path) -> Path:
    """A copy of the teacher run with ``model.z2 = true`` (q_sym(s) = (q(s) + q(-s)) / 2 of the
    same weights: the collapsed teacher's mode and its mirror image) and 20,000 samples of it in
    ``samples/samples.pt``."""
    out = out.resolve()
    if not (out / "samples" / "samples.pt").is_file():
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        config = (teacher / "config.toml").read_text()
        if "z2 = false" not in config:
            sys.exit(f"{teacher}: expected a teacher with z2 = false")
        (out / "config.toml").write_text(config.replace("z2 = false", "z2 = true"))
        shutil.copy(teacher / "checkpoints" / "last.pt", out / "checkpoints" / "last.pt")
        (out / "samples").mkdir(exist_ok=True)
        command = [sys.executable, "-m", "boltzgen", "sample", str(out), "-n", "20000"]
        command += ["-o", str(out / "samples" / "samples.pt")]
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
    return out


@torch.no_grad()
def low_density_threshold(teacher: torch.nn.Module) -> float:
    """The teacher's own 1st percentile of log p, from its samples."""
    own = torch.cat(
        [teacher.sample_and_log_prob(4096)[1] for _ in range(PERCENTILE_SAMPLES // 4096)]
    )
    return float(torch.quantile(own.double(), 0.01))


def sample_statistics(run: Path, exact: float) -> dict[str, float]:
    """ESS, F_q per site with its s.e. and F_q - F from a run's saved samples (reduced energies
    u = beta E, so F_q = mean(log q + u) / (beta N))."""
    saved = torch.load(run / "samples" / "samples.pt", weights_only=True)
    beta = float(tomllib.loads((run / "config.toml").read_text())["target"]["beta"])
    cost = (saved["log_q"].double() + saved["reduced_energies"].double()) / (
        beta * saved["samples"].shape[1]
    )
    free_energy = float(cost.mean())
    return {
        "ess": float(reverse_ess(saved["log_weights"])),
        "free_energy_per_site": free_energy,
        "free_energy_standard_error": float(cost.std() / len(cost) ** 0.5),
        "free_energy_error": free_energy - exact,
    }


def _summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


if __name__ == "__main__":
    main()
