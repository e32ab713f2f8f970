"""``boltzgen evaluate RUN_DIR [--reference DATA] [-n N] [--json]``: sample-quality metrics of a
run.

Draws N samples from the trained model and reports, with the metric functions of
:mod:`boltzgen.diagnostics.metrics`:

- ``ess``: reverse ESS fraction of the importance weights at the run's temperature (clipped);
- ``kl``: the exact KL(q||p) = E_q[log q + u] + log Z (nats, Monte Carlo over the samples) when
  the target knows log Z and the temperature is its own;
- with ``--reference`` (target samples: MD frames for molecules, exact samples for toys):
  ``nll`` (nats, frames outside the model's support counted in ``n_outside_support``),
  ``forward_ess`` and, for molecules, the Ramachandran KL/TV per (phi_i, psi_i) pair, plain and
  importance-reweighted, with the reference's split-half noise floor ``ramachandran_tv_floor``;
- the training cost from the run's checkpoint: ``energy_evaluations``, ``wall_time_s``.

Metrics that need what is missing (a reference, a molecule, log Z at this temperature) are
``null`` in the JSON, and ``not_computed`` says why (reason -> keys); the table leaves them out
and prints the reasons instead.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..workflow.evaluation import evaluate_run
from .json_output import print_json
from .values import COUNT, FRACTION, SEED, TEMPERATURE

__all__ = ["add_parser"]


def _format(value: Any) -> str:
    """A report value for the table: floats to 6 digits, lists element-wise, ``None`` as '-'."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return "-" if value is None else str(value)


def run(args: argparse.Namespace) -> int:
    """Evaluate the run and print the report (table, or one JSON object with ``--json``)."""
    report = evaluate_run(
        args.run_dir, args.n, args.reference, args.temperature, args.clip_fraction, args.seed
    )
    if args.json:
        print_json(report)
    else:
        missing = report.pop("not_computed")
        shown = {key: value for key, value in report.items() if value is not None}
        width = max(map(len, shown))
        for key, value in shown.items():
            print(f"{key:<{width}}  {_format(value)}")
        for reason, keys in missing.items():
            print(f"not computed ({reason}): {keys}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``boltzgen evaluate``."""
    p = subparsers.add_parser(
        "evaluate",
        help="sample-quality metrics of a trained run (ESS, NLL, Ramachandran KL/TV)",
        description=(
            "Draw samples from a trained run and report ESS, forward ESS, NLL and Ramachandran "
            "metrics."
        ),
    )
    p.add_argument("run_dir", help="run directory written by 'boltzgen train'")
    p.add_argument(
        "--reference",
        help="target samples: MD trajectory (mdtraj format or .npz 'positions', nm) for "
        "molecules, a sample file (.pt/.npy/.npz) for toy targets",
    )
    p.add_argument(
        "-n", type=COUNT, default=100_000, help="model samples to draw (default 100000)"
    )
    p.add_argument(
        "--temperature",
        type=TEMPERATURE,
        help="evaluate at this temperature (target units; default: the run's)",
    )
    p.add_argument(
        "--clip-fraction",
        type=FRACTION,
        default=1e-4,
        help="fraction of largest log-weights clipped (default 1e-4)",
    )
    p.add_argument("--seed", type=SEED, default=0, help="random seed of the sampler (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)
