"""Mode coverage of reverse KL at low temperature: autoregressive models with and without Z2
symmetry vs an RBM trained with the same objective.

Targets small enough to enumerate (N = 16): the 2-D Ising torus L = 4 at beta = 0.6 (modes: the
two ordered states) and SK N = 16 at beta = 2 (modes: the ground-state pair +-s*). Each model is
trained by ``ReverseKLScore`` (leave-one-out baseline, beta annealing a = 0.95; the RBM on PCD-5
chains); the table gives the exact probability of each mode's basin (nearest mode in Hamming
distance) under the target and the model, the exact KL(q||p) and KL(p||q), and the wall time.

Usage::

    python analysis/van_modes.py --steps 500 --json-out van_modes.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from boltzgen.diagnostics.discrete import (
    exact_forward_kl,
    exact_mode_masses,
    exact_reverse_kl,
    ferromagnet_modes,
    lowest_local_minima,
)
from boltzgen.energy.lattice import IsingModel2D, SherringtonKirkpatrick
from boltzgen.models import MADE, RBM, PixelCNN
from boltzgen.trainers.discrete_kl import ReverseKLScore
from boltzgen.trainers.loop import Trainer, TrainSettings


def cases() -> list[tuple[str, object, torch.Tensor, dict[str, Callable[[], torch.nn.Module]]]]:
    ising = IsingModel2D(4, 0.6)
    sk = SherringtonKirkpatrick(16, 2.0, seed=0)
    return [
        (
            "ising L=4 beta=0.6",
            ising,
            ferromagnet_modes(16),
            {
                "pixelcnn": lambda: PixelCNN(4, depth=3, width=8, half_kernel_size=2),
                "pixelcnn z2": lambda: PixelCNN(4, depth=3, width=8, half_kernel_size=2, z2=True),
                "made": lambda: MADE(16, depth=2, width=32),
                "made z2": lambda: MADE(16, depth=2, width=32, z2=True),
                "rbm (PCD-5)": lambda: RBM(16, 16, "spin", init_std=0.01, seed=0),
            },
        ),
        (
            "sk N=16 beta=2",
            sk,
            lowest_local_minima(sk, 2),
            {
                "made": lambda: MADE(16, depth=2, width=32),
                "made z2": lambda: MADE(16, depth=2, width=32, z2=True),
                "rbm (PCD-5)": lambda: RBM(16, 16, "spin", init_std=0.01, seed=0),
            },
        ),
    ]


def run(steps: int, batch: int, lr: float, seed: int) -> list[dict]:
    rows = []
    for label, target, modes, models in cases():
        exact_target = target.exact()
        target_masses = exact_mode_masses(exact_target, modes)
        for name, make in models.items():
            torch.manual_seed(seed)
            model = make().double()
            objective = ReverseKLScore(target, k_steps=5, beta_anneal=0.95)
            settings = TrainSettings(steps=steps, batch_size=batch, lr=lr, progress=False)
            started = time.perf_counter()
            Trainer(model, objective, settings).fit()
            wall = time.perf_counter() - started
            exact_model = model.exact()
            masses = exact_mode_masses(exact_model, modes)
            row = {
                "target": label,
                "model": name,
                "steps": steps,
                "batch": batch,
                "target_mode_masses": target_masses.tolist(),
                "model_mode_masses": masses.tolist(),
                "exact_reverse_kl": float(
                    exact_reverse_kl(exact_target.log_prob, exact_model.log_prob)
                ),
                "exact_forward_kl": float(
                    exact_forward_kl(exact_target.log_prob, exact_model.log_prob)
                ),
                "wall_time_s": wall,
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| target | model | mode masses: target | mode masses: model | KL(q‖p) | KL(p‖q) | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = ", ".join(f"{m:.3f}" for m in r["target_mode_masses"])
        model = ", ".join(f"{m:.3f}" for m in r["model_mode_masses"])
        lines.append(
            f"| {r['target']} | {r['model']} | {target} | {model} | "
            f"{r['exact_reverse_kl']:.3f} | {r['exact_forward_kl']:.3f} | {r['wall_time_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    rows = run(args.steps, args.batch, args.lr, args.seed)
    print(markdown(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
