"""Config registrations of the discrete problems: spin targets, RBMs and the discrete objectives.

Importing this module (which :mod:`boltzgen.workflow` does) registers

- targets ``ising``, ``curie-weiss``, ``sk``, ``edwards-anderson``, ``potts`` (K-state units)
  (:mod:`boltzgen.energy.lattice`) and ``rbm`` (a frozen random RBM,
  :class:`~boltzgen.models.RBMEnergy`);
- the models ``rbm`` (:class:`~boltzgen.models.RBM` over the target's units), ``made``
  (:class:`~boltzgen.models.MADE`) and ``pixelcnn`` (:class:`~boltzgen.models.PixelCNN`, for the
  L x L lattice targets ``ising``, ``edwards-anderson`` and ``potts``): the autoregressive models
  are normalized, so every objective below uses their exact samples and exact log q;
- objectives ``forward-kl-pcd``, ``reverse-kl-score``, ``forward-reverse-kl``
  (:mod:`boltzgen.trainers.discrete_kl`) and ``ratio-divergence``
  (:mod:`boltzgen.trainers.ratio_divergence`).

The objective ``distill``, for discrete and continuous students, is in :mod:`.distillation`.

The objectives that learn from target samples take the :class:`TrainingData` keys in their
``[trainer]`` table: ``data = "exact"`` (exact samples by enumeration, N <= 24), ``"mcmc"``
(Swendsen-Wang for ferromagnets at zero field, parallel tempering for spin glasses and fields,
block Gibbs for an RBM target) or the path of a file of states. The samples are drawn once, when
the objective is built, from their own seeded generator (``data_seed``), so a resumed run sees
the same data; the per-step randomness (batch rows, Gibbs noise of the persistent chains) comes
from torch's global generator, whose state the :class:`~boltzgen.trainers.Trainer` checkpoints
together with the chains.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from ..energy.base import Energy
from ..energy.exact import MAX_ENUMERATION_UNITS
from ..energy.lattice import (
    CurieWeiss,
    EdwardsAnderson2D,
    IsingModel2D,
    PairwiseSpinEnergy,
    PottsModel2D,
    SherringtonKirkpatrick,
)
from ..errors import BoltzgenError
from ..io import load_samples
from ..models.autoregressive import MADE, PixelCNN
from ..models.rbm import RBM, RBMEnergy
from ..samplers.mcmc import sample_parallel_tempering, sample_swendsen_wang
from ..trainers.discrete_kl import ForwardKLPCD, ForwardReverseKL, ReverseKLScore
from ..trainers.ratio_divergence import RatioDivergence
from .ranges import SCHEDULE_BETA
from .registry import register

__all__ = ["TrainingData", "MCMC_METHODS", "visible_kind", "unit_levels", "device_and_dtype"]

#: ``mcmc_method`` values; ``"auto"`` picks by target (see :meth:`TrainingData.mcmc_method_for`).
MCMC_METHODS = ("auto", "swendsen-wang", "parallel-tempering", "gibbs")


def visible_kind(target: Energy, section: str) -> str:
    """``"spin"`` (+-1), ``"binary"`` ({0, 1}) or ``"categorical"`` (0 .. K-1, a Potts target):
    the unit values of a discrete target.

    Raises:
        BoltzgenError: naming ``[section]``, when the target is not a spin, Potts or RBM model.
    """
    if isinstance(target, RBMEnergy):
        return target.rbm.visible
    if isinstance(target, PairwiseSpinEnergy):
        return "spin"
    if isinstance(target, PottsModel2D):
        return "categorical"
    raise BoltzgenError(
        f"[{section}] needs a discrete target (ising, curie-weiss, sk, edwards-anderson, potts, "
        f"rbm), got {type(target).__name__}"
    )


def unit_levels(target: Energy) -> int:
    """Values per unit of a discrete target: its ``levels`` (q of a Potts target), else 2 (an
    RBM target)."""
    return getattr(target, "levels", 2)


def device_and_dtype(target: Energy) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the target's tensors (what the config asked for)."""
    tensors = [t for t in (*target.parameters(), *target.buffers()) if t.is_floating_point()]
    return tensors[0].device, tensors[0].dtype


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """Where an objective's target samples come from: the data keys of its ``[trainer]`` table.

    Attributes:
        data: ``"exact"`` (enumeration of all K**N states, at most 2**24), ``"mcmc"`` (not for
            a Potts target), or the path of a ``.pt`` / ``.npy`` / ``.npz`` file holding states
            of shape (n, N) with the target's unit values (+-1, {0, 1} for a binary RBM target,
            0 .. q-1 for a Potts target).
        n_data: Number of samples drawn for ``"exact"`` and ``"mcmc"`` (a file is used whole).
        data_seed: Seed of the generator that draws them (on the config's device).
        data_key: Entry / array name inside a ``.pt`` dict or ``.npz`` file.
        mcmc_method: ``"auto"`` (Swendsen-Wang for ferromagnets at zero field, parallel
            tempering for other spin models, block Gibbs for an RBM target), or one of them:
            ``"swendsen-wang"``, ``"parallel-tempering"``, ``"gibbs"``.
        mcmc_chains: Independent chains (per temperature for parallel tempering).
        mcmc_burn_in: Steps discarded first (Swendsen-Wang updates, parallel-tempering rounds of
            one Metropolis sweep plus swaps, or block-Gibbs sweeps).
        mcmc_thin: Steps between two recorded states of a chain.
        mcmc_replicas: Rungs of the geometric parallel-tempering ladder, from beta = min(0.1,
            beta) up to the target's beta.
    """

    data: str = "exact"
    n_data: int = 20_000
    data_seed: int = 0
    data_key: str = "samples"
    mcmc_method: str = "auto"
    mcmc_chains: int = 256
    mcmc_burn_in: int = 200
    mcmc_thin: int = 1
    mcmc_replicas: int = 16

    def __post_init__(self) -> None:
        checks = {
            "n_data": self.n_data >= 1,
            "mcmc_chains": self.mcmc_chains >= 1,
            "mcmc_burn_in": self.mcmc_burn_in >= 0,
            "mcmc_thin": self.mcmc_thin >= 1,
            "mcmc_replicas": self.mcmc_replicas >= 2,
        }
        for name, ok in checks.items():
            if not ok:
                raise BoltzgenError(f"[trainer] {name} = {getattr(self, name)!r} is out of range")
        if self.mcmc_method not in MCMC_METHODS:
            raise BoltzgenError(
                f"[trainer] mcmc_method = {self.mcmc_method!r}; choose one of: "
                f"{', '.join(MCMC_METHODS)}"
            )

    def samples(self, target: Energy) -> Tensor:
        """The training states, shape ``(n, N)``, on the target's device and dtype."""
        kind = visible_kind(target, "trainer")
        device, dtype = device_and_dtype(target)
        generator = torch.Generator(device=device).manual_seed(self.data_seed)
        levels = unit_levels(target)
        if self.data == "exact":
            if levels**target.dim > 1 << MAX_ENUMERATION_UNITS:
                raise BoltzgenError(
                    f'[trainer] data = "exact" enumerates all {levels}**N states and needs at '
                    f"most 2**{MAX_ENUMERATION_UNITS}; this target has N = {target.dim}: use "
                    'data = "mcmc" or a file'
                )
            states = target.exact().sample(self.n_data, generator)
        elif self.data == "mcmc":
            states = self._mcmc(target, generator, device)
        else:
            states = self._from_file(target, kind, levels)
        return states.to(device, dtype)

    def mcmc_method_for(self, target: Energy) -> str:
        """The sampler ``mcmc_method`` selects for ``target`` (resolving ``"auto"``)."""
        if self.mcmc_method != "auto":
            return self.mcmc_method
        if isinstance(target, RBMEnergy):
            return "gibbs"
        ferromagnet = bool((target.couplings >= 0).all()) and not target.has_field
        return "swendsen-wang" if ferromagnet else "parallel-tempering"

    def _mcmc(self, target: Energy, generator: torch.Generator, device: torch.device) -> Tensor:
        if isinstance(target, PottsModel2D):
            raise BoltzgenError(
                '[trainer] data = "mcmc" has no sampler for the Potts model: use data = "exact" '
                "(q**N <= 2**24) or a file of states"
            )
        method = self.mcmc_method_for(target)
        if (method == "gibbs") != isinstance(target, RBMEnergy):
            raise BoltzgenError(
                f"[trainer] mcmc_method = {method!r} does not apply to {type(target).__name__}: "
                'use "gibbs" for an rbm target, "swendsen-wang" or "parallel-tempering" for '
                "spin models"
            )
        settings = {
            "n_chains": self.mcmc_chains,
            "n_burn_in": self.mcmc_burn_in,
            "thin": self.mcmc_thin,
            "generator": generator,
            "device": device,
            "dtype": torch.float64,
        }
        if method == "swendsen-wang":
            return sample_swendsen_wang(target, self.n_data, **settings)
        if method == "parallel-tempering":
            return sample_parallel_tempering(
                target, self.n_data, n_replicas=self.mcmc_replicas, **settings
            )
        return self._gibbs(target.rbm, generator)

    def _gibbs(self, rbm: RBM, generator: torch.Generator) -> Tensor:
        """Block-Gibbs chains of an RBM target, recorded chain-major like the spin samplers."""
        states = rbm.sample(self.mcmc_chains, self.mcmc_burn_in, generator)
        records = []
        for _ in range(math.ceil(self.n_data / self.mcmc_chains)):
            states = rbm.sample(self.mcmc_chains, self.mcmc_thin, generator, init=states)
            records.append(states)
        return torch.cat(records)[: self.n_data]

    def _from_file(self, target: Energy, kind: str, levels: int) -> Tensor:
        states = load_samples(self.data, key=self.data_key)
        if states.dim() != 2 or states.shape[1] != target.dim or states.shape[0] < 1:
            raise BoltzgenError(
                f"[trainer] data file {self.data} holds shape {tuple(states.shape)}; expected "
                f"(n, {target.dim})"
            )
        values = {"spin": [-1.0, 1.0], "binary": [0.0, 1.0]}.get(kind, list(range(levels)))
        allowed = torch.tensor(values, dtype=torch.float64)
        if not torch.isin(states.double(), allowed).all():
            raise BoltzgenError(
                f"[trainer] data file {self.data} holds values other than {allowed.tolist()} "
                f"(the target's {kind} units)"
            )
        return states


# -- targets -------------------------------------------------------------------------------
@register("target", "ising")
def _ising(L: int = 4, beta: float = 0.4406868, J: float = 1.0, h: float = 0.0) -> Energy:
    """Periodic L x L Ising model, u = beta E (beta_c = 0.4406868 at J = 1).

    Arguments:
        L: Side of the square lattice (N = L^2 spins, periodic).
        beta: Inverse temperature (1 / kT in units of J).
        J: Coupling of nearest neighbours (> 0 ferromagnetic).
        h: External field.
    """
    return IsingModel2D(L, beta, J=J, h=h)


@register("target", "curie-weiss")
def _curie_weiss(n: int = 20, beta: float = 1.5, h: float = 0.0) -> Energy:
    """Mean-field ferromagnet E = -(sum s)^2 / (2N) - h sum s (beta_c = 1).

    Arguments:
        n: Number of spins.
        beta: Inverse temperature.
        h: External field.
    """
    return CurieWeiss(n, beta, h=h)


@register("target", "sk")
def _sk(n: int = 10, beta: float = 1.5, seed: int = 0) -> Energy:
    """Sherrington-Kirkpatrick spin glass, couplings N(0, 1/N) from ``seed``.

    Arguments:
        n: Number of spins (all pairs coupled).
        beta: Inverse temperature.
        seed: Seed of the Gaussian couplings.
    """
    return SherringtonKirkpatrick(n, beta, seed=seed)


@register("target", "edwards-anderson")
def _edwards_anderson(L: int = 4, beta: float = 1.0, seed: int = 0) -> Energy:
    """+-J spin glass on a periodic L x L torus, bonds from ``seed``.

    Arguments:
        L: Side of the square lattice (N = L^2 spins, periodic).
        beta: Inverse temperature.
        seed: Seed of the random +-1 bonds.
    """
    return EdwardsAnderson2D(L, beta, seed=seed)


@register("target", "potts")
def _potts(L: int = 3, q: int = 3, beta: float = 1.0050525, J: float = 1.0) -> Energy:
    """q-state Potts model on a periodic L x L torus, E = -J sum_<ij> delta(s_i, s_j), units
    0 .. q-1 (beta_c J = ln(1 + sqrt q): 1.0050525 at q = 3).

    Arguments:
        L: Side of the square lattice (N = L^2 sites, periodic).
        q: States per site.
        beta: Inverse temperature (1 / kT in units of J).
        J: Coupling of nearest neighbours (> 0 ferromagnetic).
    """
    return PottsModel2D(L, q, beta, J=J)


@register("target", "rbm")
def _rbm_target(
    n_visible: int = 12,
    n_hidden: int = 8,
    visible: str = "spin",
    init_std: float = 1.0,
    seed: int = 0,
) -> Energy:
    """A frozen random RBM as target, u(v) = F(v): weights N(0, init_std^2) drawn from ``seed``,
    biases 0."""
    if visible not in ("spin", "binary"):
        raise BoltzgenError(
            f'[target] visible = {visible!r}: choose "spin" (+-1 units) or "binary" ({{0, 1}} '
            "units)"
        )
    return RBMEnergy(RBM(n_visible, n_hidden, visible, init_std=init_std, seed=seed))


# -- model ----------------------------------------------------------------------------------
@register("model", "rbm")
def _rbm_model(
    target: Energy, n_hidden: int = 16, init_std: float = 0.01, seed: int = 0
) -> torch.nn.Module:
    """RBM with the target's N units as visible layer (+-1 or {0, 1} like the target) and {0, 1}
    hidden units.

    One layer must have <= 24 units: the end-of-run summary needs its exact log Z_theta.
    """
    kind = visible_kind(target, "model")
    if kind == "categorical":
        raise BoltzgenError(
            "[model] rbm has two-state units; for a potts target use made or pixelcnn"
        )
    if min(target.dim, n_hidden) > MAX_ENUMERATION_UNITS:
        raise BoltzgenError(
            f"[model] rbm with {target.dim} visible and {n_hidden} hidden units: one layer needs "
            "<= "
            f"{MAX_ENUMERATION_UNITS} units for an exact log Z_theta; lower n_hidden"
        )
    return RBM(target.dim, n_hidden, kind, init_std=init_std, seed=seed)


def _units(target: Energy) -> dict[str, Any]:
    """The ``visible`` and ``n_states`` arguments of an autoregressive model of ``target``."""
    return {"visible": visible_kind(target, "model"), "n_states": unit_levels(target)}


@register("model", "made", keys_from=[MADE], exclude=["n_sites", "visible", "n_states"])
def _made(target: Energy, **options: Any) -> torch.nn.Module:
    """MADE over the target's N units (+-1, {0, 1} or 0 .. q-1 like the target); the other keys
    are :class:`~boltzgen.models.MADE`'s arguments and defaults."""
    return MADE(target.dim, **_units(target), **options)


@register("model", "pixelcnn", keys_from=[PixelCNN], exclude=["L", "visible", "n_states"])
def _pixelcnn(target: Energy, **options: Any) -> torch.nn.Module:
    """PixelCNN over the L x L sites of a lattice target (ising, edwards-anderson, potts); the
    other keys are :class:`~boltzgen.models.PixelCNN`'s arguments and defaults."""
    if not isinstance(target, (IsingModel2D, EdwardsAnderson2D, PottsModel2D)):
        raise BoltzgenError(
            "[model] pixelcnn needs an L x L lattice target (ising, edwards-anderson, potts), "
            f"got {type(target).__name__}; use made for other discrete targets"
        )
    return PixelCNN(target.L, **_units(target), **options)


# -- objectives -----------------------------------------------------------------------------
@register("trainer", "forward-kl-pcd", keys_from=[TrainingData])
def _forward_kl_pcd(target: Energy, k_steps: int = 1, **data_options: Any) -> Any:
    """Maximum likelihood on target samples, negative phase from PCD-k chains (no energy calls)."""
    data = TrainingData(**data_options).samples(target)
    return ForwardKLPCD(data, k_steps)


@register("trainer", "reverse-kl-score")
def _reverse_kl_score(
    target: Energy,
    k_steps: int = 1,
    baseline: str = "leave-one-out",
    beta_anneal: float = 0.0,
    betas: list | None = None,
    steps_per_beta: int = 1000,
) -> Any:
    """KL(q||p) with the score-function gradient (no data): on PCD-k model samples for an RBM,
    on exact samples for made / pixelcnn (VAN); ``baseline`` = "leave-one-out" or "mean",
    ``beta_anneal`` = a of beta_t = beta (1 - a^t) (0: none); ``betas`` = a schedule of inverse
    temperatures ending at the target's, ``steps_per_beta`` steps each (the run's summary lists
    the free-energy estimates at each beta)."""
    visible_kind(target, "trainer")
    for index, value in enumerate(betas or ()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            SCHEDULE_BETA.check(f"[trainer] betas[{index}]", value)
    return ReverseKLScore(
        target,
        k_steps,
        baseline=baseline,
        beta_anneal=beta_anneal,
        betas=betas,
        steps_per_beta=steps_per_beta,
    )


@register("trainer", "forward-reverse-kl", keys_from=[TrainingData])
def _forward_reverse_kl(target: Energy, k_steps: int = 1, **data_options: Any) -> Any:
    """KL(p||q) + KL(q||p) on the same PCD-k model samples."""
    data = TrainingData(**data_options).samples(target)
    return ForwardReverseKL(target, data, k_steps)


@register("trainer", "ratio-divergence", keys_from=[TrainingData])
def _ratio_divergence(target: Energy, k_steps: int = 1, **data_options: Any) -> Any:
    """Ratio divergence E_p E_q[(l(x) - l(y))^2] (Ishida et al. 2024) on data and PCD-k model
    samples."""
    data = TrainingData(**data_options).samples(target)
    return RatioDivergence(target, data, k_steps)
