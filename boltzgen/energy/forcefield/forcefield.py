"""The torch force field: a batched, differentiable energy compiled from an OpenMM System."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ...errors import BoltzgenError
from ...molecule.units import BOLTZMANN_CONSTANT
from ..base import Energy
from .pairs import PairList
from .term import ForceTerm

if TYPE_CHECKING:
    from ...molecule.molecule import Molecule

__all__ = ["TorchForceField"]


#: Bytes of intermediates one configuration costs per pair (float64, energy + backward), measured
#: roughly; sets the default chunk size from a memory budget.
_BYTES_PER_PAIR = 8 * 48
#: Pair-tensor elements per chunk on the CPU (256 KiB in float32; ~283 alanine-dipeptide
#: configurations): chunks this small keep the elementwise operations' operands in a core's L2
#: cache (measured on the 2-core VM: 256-configuration chunks 1.25x faster than 1024, 64 slower).
_CPU_CHUNK_ELEMENTS = 2**16


class TorchForceField(Energy):
    """Reduced energies u(x) = U(x)/(k_B T) of a molecule from compiled OpenMM forces.

    Built by :func:`~boltzgen.energy.forcefield.compile_system`. Positions are ``(batch, N, 3)``
    in nm on any device, float32 or float64 (parameters are cast to the input's dtype and device;
    call ``.to(device, dtype)`` once to avoid the per-call cast). Gradients come from autograd:
    forces = -dU/dx.

    Batches larger than ``max_batch`` are evaluated in chunks; under autograd each chunk is
    checkpointed (recomputed in the backward pass), so memory stays bounded at any batch size.
    On the CPU, batches are also split into cache-sized chunks of ``cpu_chunk`` configurations
    (not checkpointed: same memory, better locality).

    Arguments:
        terms: The compiled forces.
        n_atoms: Number of atoms N.
        temperature: T in K.
        pairs: The shared all-pairs list when a term ``uses_pairs``.
        max_batch: Chunk size; ``None`` picks it from ``memory_budget``.
        memory_budget: Bytes of intermediates one chunk may use (default 1 GiB).
        molecule: The molecule the System belongs to (read back as :attr:`molecule`), or ``None``.
    """

    def __init__(
        self,
        terms: Sequence[ForceTerm],
        n_atoms: int,
        temperature: float,
        pairs: PairList | None = None,
        max_batch: int | None = None,
        memory_budget: int = 2**30,
        molecule: Molecule | None = None,
    ) -> None:
        super().__init__((n_atoms, 3), temperature, molecule=molecule)
        if any(term.uses_pairs for term in terms) and pairs is None:
            raise BoltzgenError("a pair term needs the molecule's PairList")
        self.terms = torch.nn.ModuleList(terms)
        self.pairs = pairs
        self.kT = BOLTZMANN_CONSTANT * self.temperature
        n_pairs = max(pairs.n_pairs if pairs is not None else 0, n_atoms)
        self.max_batch = (
            int(max_batch)
            if max_batch is not None
            else max(1, memory_budget // (_BYTES_PER_PAIR * n_pairs))
        )
        if self.max_batch < 1:
            raise BoltzgenError(f"max_batch must be at least 1, got {max_batch}")
        self.cpu_chunk = min(self.max_batch, max(1, _CPU_CHUNK_ELEMENTS // n_pairs))
        self._kernel: Callable[[Tensor], Tensor] = self._total_energy
        self.use_analytic_gradients(True)

    def use_analytic_gradients(self, enabled: bool = True) -> TorchForceField:
        """Differentiate the pair terms (Coulomb + Lennard-Jones, generalized Born) with their
        hand-written derivatives (default; first derivatives only) or, with ``enabled=False``,
        with autograd (the reference, which also gives second derivatives). Returns ``self``."""
        for term in self.terms:
            term.analytic_gradient = enabled and hasattr(term, "energy_and_gradient")
        return self

    @property
    def analytic_gradients(self) -> bool:
        """Whether some term uses its hand-written derivative (:meth:`use_analytic_gradients`)."""
        return any(term.analytic_gradient for term in self.terms)

    def enable_compile(self, **options: object) -> TorchForceField:
        """Evaluate through ``torch.compile(**options)`` (fused kernels; the first call of each
        shape compiles, which takes a minute or more on a small CPU). Returns ``self``.

        The plain path stays the reference; :meth:`disable_compile` returns to it.
        """
        self._kernel = torch.compile(self._total_energy, **options)
        return self

    def disable_compile(self) -> TorchForceField:
        """Evaluate with the plain (eager) path again. Returns ``self``."""
        self._kernel = self._total_energy
        return self

    @property
    def force_names(self) -> list[str]:
        """OpenMM class names of the compiled forces, in System order without repeats."""
        return list(dict.fromkeys(term.force_name for term in self.terms))

    def _term_energies(self, x: Tensor, forces: Sequence[str] | None = None) -> Tensor:
        """Energies of each term (of the force classes ``forces``, default all), shape
        ``(batch, n_terms)``, kJ/mol."""
        terms = [term for term in self.terms if forces is None or term.force_name in forces]
        if not terms:
            return (x * 0.0).sum((1, 2)).unsqueeze(1)  # no energy, but a graph to x
        xt = x.permute(2, 1, 0)
        distances = (
            self.pairs.distances(xt)
            if self.pairs is not None and any(t.uses_pairs for t in terms)
            else None
        )
        return torch.stack([term(xt, distances) for term in terms], dim=1)

    def _validated(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1:] != self.event_shape or not x.is_floating_point():
            raise BoltzgenError(
                f"expected float positions of shape (batch, {self.event_shape[0]}, 3) in nm, "
                f"got {tuple(x.shape)} {x.dtype}"
            )
        return x

    def _total_energy(self, x: Tensor) -> Tensor:
        return self._term_energies(x).sum(-1)

    def _chunk_size(self, x: Tensor) -> int:
        return self.cpu_chunk if x.device.type == "cpu" else self.max_batch

    def _chunked(self, function: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        if x.shape[0] <= self._chunk_size(x):
            return function(x)
        if torch.is_grad_enabled() and x.requires_grad and x.shape[0] > self.max_batch:
            return torch.cat(
                [
                    checkpoint(function, chunk, use_reentrant=False)
                    for chunk in x.split(self.max_batch)
                ]
            )
        return torch.cat([function(chunk) for chunk in x.split(self._chunk_size(x))])

    def potential_energy(self, x: Tensor) -> Tensor:
        """Potential energy U(x).

        Arguments:
            x: Positions, shape ``(batch, N, 3)``, nm.

        Returns:
            Energies, shape ``(batch,)``, kJ/mol.
        """
        return self._chunked(self._kernel, self._validated(x))

    def energy_terms(self, x: Tensor) -> dict[str, Tensor]:
        """Energy of each OpenMM force class (forces of the same class summed).

        Arguments:
            x: Positions, shape ``(batch, N, 3)``, nm.

        Returns:
            ``{force class name: energies of shape (batch,)}`` in kJ/mol.
        """
        per_term = self._chunked(self._term_energies, self._validated(x))
        names = [term.force_name for term in self.terms]
        return {
            name: per_term[:, [k for k, n in enumerate(names) if n == name]].sum(-1)
            for name in self.force_names
        }

    def energy_and_forces(
        self, x: Tensor, forces: Sequence[str] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Potential energies and forces, chunk by chunk (no graph is kept).

        Arguments:
            x: Positions, shape ``(batch, N, 3)``, nm.
            forces: Include only these OpenMM force classes (default: all).

        Returns:
            ``(U, F)``: energies of shape ``(batch,)`` in kJ/mol and forces F = -dU/dx of shape
            ``(batch, N, 3)`` in kJ/mol/nm.
        """
        energies, minus_gradients = [], []
        for chunk in self._validated(x).detach().split(self._chunk_size(x)):
            with torch.enable_grad():
                chunk = chunk.requires_grad_(True)
                u = (
                    self._kernel(chunk)
                    if forces is None
                    else self._term_energies(chunk, forces).sum(-1)
                )
                (gradient,) = torch.autograd.grad(u.sum(), chunk)
            energies.append(u.detach())
            minus_gradients.append(-gradient)
        return torch.cat(energies), torch.cat(minus_gradients)

    def _energy(self, x: Tensor) -> Tensor:
        return self._chunked(self._kernel, x) / self.kT

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, forces={self.force_names}, max_batch={self.max_batch}, "
            f"cpu_chunk={self.cpu_chunk}"
        )
