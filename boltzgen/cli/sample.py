"""``boltzgen sample RUN_DIR -n N -o FILE``: draw samples from a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import BoltzgenError
from ..samplers.weights import reverse_ess
from ..workflow.registry import training_temperature
from ..workflow.runs import load_run
from ..workflow.sampling import draw_samples, write_samples
from .json_output import print_json
from .values import COUNT, SEED, TEMPERATURE

__all__ = ["add_parser"]


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise BoltzgenError("-n must be at least 1")
    resolved, target, model = load_run(args.run_dir)
    torch.manual_seed(args.seed)
    temperature = (
        args.temperature if args.temperature is not None else training_temperature(resolved)
    )
    drawn = draw_samples(model, target, args.n, temperature)
    out = Path(args.output)
    prefix = out.with_suffix("") if out.suffix in (".pt", ".pdb", ".dcd", ".h5", ".xtc") else out
    paths = write_samples(prefix, target, drawn, temperature)
    result = {
        "files": [str(p) for p in paths],
        "n_samples": args.n,
        "ess": float(reverse_ess(drawn["log_weights"])),
        "temperature": temperature if temperature is not None else target.temperature,
    }
    if args.json:
        print_json(result)
    else:
        print(
            f"wrote {args.n} samples (ESS {result['ess']:.4f} at T = {result['temperature']:g}):"
        )
        for path in paths:
            print(f"  {path}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sample",
        help="draw samples from a trained run",
        description="Draw samples from a trained run directory.",
    )
    p.add_argument("run_dir", help="run directory written by 'boltzgen train'")
    p.add_argument("-n", type=COUNT, default=10000, help="number of samples (default 10000)")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file: FILE.pt for toy targets, a prefix (FILE or FILE.pdb) for molecules",
    )
    p.add_argument(
        "--temperature",
        type=TEMPERATURE,
        help="reweight to this temperature (target units; default: the run's)",
    )
    p.add_argument("--seed", type=SEED, default=0, help="random seed of the sampler (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)
