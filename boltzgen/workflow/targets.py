"""Config registrations of the continuous targets: the toy densities and molecules.

``[target] name = "gaussian-mixture" | "double-well" | "many-well"`` (:mod:`boltzgen.energy.toy`)
and ``"molecule"`` (a :class:`~boltzgen.molecule.Molecule` and its energy; OpenMM is imported
only when such a target is built). The discrete targets are in :mod:`.discrete`.
"""

from __future__ import annotations

from ..energy.base import Energy
from ..energy.toy import DoubleWell, GaussianMixture2D, ManyWell
from ..errors import BoltzgenError
from .registry import register

__all__: list[str] = []


@register("target", "gaussian-mixture")
def _gaussian_mixture(
    n_modes: int = 8, radius: float = 3.0, sigma: float = 0.3, weights: str = "uniform"
) -> Energy:
    """8 modes on a ring of radius 3 (sigma 0.3); weights 'uniform' or 'skewed' (1:2:...:K)."""
    if weights not in ("uniform", "skewed"):
        raise BoltzgenError(f"[target] weights must be 'uniform' or 'skewed', got {weights!r}")
    w = None if weights == "uniform" else GaussianMixture2D.skewed_weights(n_modes)
    return GaussianMixture2D(n_modes=n_modes, radius=radius, sigma=sigma, weights=w)


@register("target", "double-well")
def _double_well(
    dim: int = 2, n_wells: int = 1, a: float = 1.0, b: float = -6.0, c: float = -0.5
) -> Energy:
    return DoubleWell(dim=dim, n_wells=n_wells, a=a, b=b, c=c)


@register("target", "many-well")
def _many_well(n_pairs: int = 16) -> Energy:
    return ManyWell(n_pairs=n_pairs)


@register("target", "molecule")
def _molecule(
    system: str | None = None,
    pdb: str | None = None,
    sequence: str | None = None,
    forcefield: list | None = None,
    solvent: str | None = None,
    constraints: str | None = None,
    temperature: float | None = None,
    energy: str = "torch",
) -> Energy:
    """A molecule (exactly one of ``system`` = catalog name, ``pdb`` = path, ``sequence``) and its
    energy.

    ``energy``: ``"torch"`` (the compiled torch force field; falls back to OpenMM with a warning
    for unsupported forces), ``"torch-autograd"`` (the same, differentiated by autograd
    throughout: slower, with second derivatives), ``"torch-compile"`` (the autograd path
    through ``torch.compile``: faster, after a compile of 30-80 s per batch shape) or
    ``"openmm"`` (the OpenMM bridge). The energy's own temperature is the molecule's (K);
    ``[trainer] temperature`` is in K too.
    """
    from ..energy.forcefield.molecule_energy import ENERGY_CHOICES, energy_for_molecule
    from ..molecule.spec import molecule_from_spec

    sources = {"name": system, "pdb": pdb, "sequence": sequence}
    spec = {key: value for key, value in sources.items() if value}
    options = {
        "forcefield": forcefield,
        "solvent": solvent,
        "constraints": constraints,
        "temperature": temperature,
    }
    spec.update({key: value for key, value in options.items() if value is not None})
    if energy not in ENERGY_CHOICES:
        raise BoltzgenError(
            f"[target] energy must be one of {', '.join(ENERGY_CHOICES)}; got {energy!r}"
        )
    molecule = molecule_from_spec(spec)
    return energy_for_molecule(molecule, prefer=energy)
