"""How much the rotation-orbit factor of the reference measure moves alanine-dipeptide numbers.

The density over internal coordinates is taken relative to Cartesian volume modulo rigid motions
(docs/coordinates.md): its log-det includes ``orbit = 2 log b_2 + log b_3 + log sin a_3`` of the
first three Z-matrix atoms, which the canonical-frame measure used before left out. For one and
the same flow (same parameters),

    log q_canonical(x) = log q(x) + orbit(x),    log w_canonical(x) = log w(x) - orbit(x),

so both measures can be evaluated on the same samples. The script runs OpenMM Langevin MD of
alanine dipeptide at 300 K (amber96/OBC1, the catalog entry), fits an internal-coordinate flow to
the frames by maximum likelihood (the fitted parameters do not depend on the measure, since the
orbit term does not depend on them), then prints, for both measures: the NLL of the MD frames, the
reverse ESS of flow samples, the forward ESS on MD frames, the reweighted means of b_2, b_3 and
a_3 (with the MD values and standard errors), and the reweighted basin populations.

Usage::

    python analysis/orbit_measure.py --frames 4000 --steps 600 --samples 40000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from openmm import unit

from boltzgen.diagnostics.metrics import nll
from boltzgen.energy.forcefield.molecule_energy import energy_for_molecule
from boltzgen.flows.molecular import MolecularFlow
from boltzgen.md.openmm_langevin import langevin_context
from boltzgen.md.statistics import block_standard_error
from boltzgen.molecule.molecule import Molecule
from boltzgen.molecule.ramachandran import basin_populations
from boltzgen.samplers.weights import forward_ess, reverse_ess, self_normalized_weights


def md_frames(molecule: Molecule, n_frames: int, interval: int, seed: int) -> torch.Tensor:
    """OpenMM Langevin MD (1 fs, 5/ps) after 5 ps of equilibration: ``(n_frames, N, 3)`` nm."""
    context, integrator = langevin_context(
        molecule.system, molecule.positions, molecule.temperature, 0.001, 5.0, seed=seed
    )
    integrator.step(5000)
    frames = []
    for _ in range(n_frames):
        integrator.step(interval)
        state = context.getState(getPositions=True)
        frames.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    return torch.tensor(np.array(frames))


def fit_flow(molecule: Molecule, data: torch.Tensor, steps: int, seed: int) -> MolecularFlow:
    """Maximum likelihood (Adam 2e-3, batch 256) of an 8-layer width-64 flow on the frames."""
    flow = MolecularFlow(molecule, n_layers=8, hidden=64, depth=2, seed=seed)
    optimizer = torch.optim.Adam(flow.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = data[torch.randint(len(data), (256,), generator=generator)]
        loss = -flow.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return flow


def orbit_log_volume(flow: MolecularFlow, x: torch.Tensor) -> torch.Tensor:
    """``2 log b_2 + log b_3 + log sin a_3`` of positions ``(B, N, 3)``, shape ``(B,)``."""
    features, _ = flow.coordinates(x)
    a_3 = flow.coordinates.n_bonds
    return 2 * features[:, 0].log() + features[:, 1].log() + features[:, a_3].sin().log()


def first_three(flow: MolecularFlow, x: torch.Tensor) -> dict[str, np.ndarray]:
    """b_2, b_3 (nm) and a_3 (rad) of positions ``(B, N, 3)``."""
    features, _ = flow.coordinates(x)
    columns = {"b_2": 0, "b_3": 1, "a_3": flow.coordinates.n_bonds}
    return {name: features[:, c].numpy() for name, c in columns.items()}


def measure_row(
    flow: MolecularFlow,
    samples: torch.Tensor,
    log_w_samples: torch.Tensor,
    data: torch.Tensor,
    log_q_data: torch.Tensor,
    log_w_data: torch.Tensor,
) -> dict[str, object]:
    """NLL, ESS, reweighted first-three-atom means and basin populations under one measure."""
    weights = self_normalized_weights(log_w_samples)
    phi, psi = (a[:, 0].numpy() for a in flow.dihedrals(samples))
    means = {name: float(weights @ v) for name, v in first_three(flow, samples).items()}
    return {
        "nll": nll(log_q_data)["nll"],
        "reverse_ess": float(reverse_ess(log_w_samples)),
        "forward_ess": float(forward_ess(log_w_data)),
        "means": means,
        "basins": basin_populations(phi, psi, weights),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=4000, help="MD frames (default 4000)")
    parser.add_argument("--interval", type=int, default=50, help="MD steps between frames")
    parser.add_argument("--steps", type=int, default=600, help="maximum-likelihood steps")
    parser.add_argument("--samples", type=int, default=40000, help="flow samples")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json-out", help="write the table as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)

    started = time.perf_counter()
    molecule = Molecule.from_catalog("alanine-dipeptide")
    data = md_frames(molecule, args.frames, args.interval, args.seed)
    md_seconds = time.perf_counter() - started
    flow = fit_flow(molecule, data, args.steps, args.seed)
    energy = energy_for_molecule(molecule)
    with torch.no_grad():
        samples, log_q = flow.sample_and_log_prob(args.samples)
        log_w = -energy.energy(samples) - log_q
        log_q_data = flow.log_prob(data)
        log_w_data = -energy.energy(data) - log_q_data
        orbit_samples, orbit_data = orbit_log_volume(flow, samples), orbit_log_volume(flow, data)
    rows = {
        "orbit measure (now)": measure_row(flow, samples, log_w, data, log_q_data, log_w_data),
        "canonical frame (before)": measure_row(
            flow,
            samples,
            log_w - orbit_samples,
            data,
            log_q_data + orbit_data,
            log_w_data - orbit_data,
        ),
    }
    md_values = first_three(flow, data)
    md = {name: (float(v.mean()), block_standard_error(v)) for name, v in md_values.items()}
    md_basins = basin_populations(*(a[:, 0].numpy() for a in flow.dihedrals(data)))

    print(
        f"alanine dipeptide, 300 K: {args.frames} MD frames ({md_seconds:.0f} s), flow fitted "
        f"by {args.steps} ML steps, {args.samples} flow samples; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    print(
        f"orbit term on MD frames: mean {orbit_data.mean():.4f}, std {orbit_data.std():.4f} nats"
    )
    header = f"{'measure':26} {'NLL':>9} {'rev ESS':>8} {'fwd ESS':>8}"
    header += "".join(f" {name:>9}" for name in md) + " basins (C7eq/C5, alphaR, alphaL)"
    print(header)
    for label, row in rows.items():
        line = f"{label:26} {row['nll']:9.3f} {row['reverse_ess']:8.2e} {row['forward_ess']:8.2e}"
        line += "".join(f" {row['means'][name]:9.5f}" for name in md)
        print(line + " " + ", ".join(f"{p:.4f}" for p in row["basins"].values()))
    line = f"{'MD (s.e.)':26} {'':9} {'':8} {'':8}"
    line += "".join(f" {mean:9.5f}" for mean, _ in md.values())
    print(line + " " + ", ".join(f"{p:.4f}" for p in md_basins.values()))
    print(f"{'':54}" + "".join(f" {se:9.1e}" for _, se in md.values()))
    if args.json_out:
        table = {"rows": rows, "md": md, "md_basins": md_basins, "args": vars(args)}
        with open(args.json_out, "w") as handle:
            json.dump(table, handle, indent=2)


if __name__ == "__main__":
    main()
