"""Config registrations of the cumulant-GAN family: ``cumulant-gan`` and ``renyi``.

``cumulant-gan`` (:class:`~boltzgen.trainers.gan.CumulantGAN`) learns from data, which its
``[trainer]`` table names with the :class:`~boltzgen.workflow.discrete.TrainingData` keys:

- discrete targets: ``data = "exact"`` (N <= 24), ``"mcmc"`` or a file of states, as for the
  other discrete objectives;
- continuous targets: ``data = "exact"`` (targets with an exact sampler, e.g. the 2-D Gaussian
  mixture: ``n_data`` samples from ``data_seed``) or a file, e.g. a reference MD dataset written
  by ``boltzgen reference`` (``data = "reference/alanine-dipeptide/train.npz"``, positions in nm);
  the ``mcmc_*`` keys apply to discrete targets only.

Its discriminator is an MLP (``d_hidden`` wide, ``d_depth`` hidden layers) on the target's
features (:func:`~boltzgen.trainers.discriminator.feature_map`), built here on the config's
device and dtype from the config's seed.

``renyi`` (:class:`~boltzgen.trainers.renyi.Renyi`) needs the target energy only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..energy.base import Energy
from ..errors import BoltzgenError
from ..io import load_samples
from ..trainers.discriminator import Discriminator, feature_map
from ..trainers.gan import CumulantGAN
from ..trainers.renyi import Renyi
from .discrete import TrainingData
from .registry import register

__all__: list[str] = []


def _continuous_data(target: Energy, data: TrainingData) -> Tensor:
    """Training samples of a continuous target: exact samples or a file (see module docstring)."""
    if data.data == "mcmc":
        raise BoltzgenError(
            '[trainer] data = "mcmc" is for discrete targets; give a file of samples (e.g. '
            'from boltzgen reference) or "exact" for a target with an exact sampler'
        )
    if data.data == "exact":
        if not target.can_sample:
            raise BoltzgenError(
                f"[trainer] data = 'exact', but the target {type(target).__name__} has no exact "
                "sampler; give a data file (boltzgen reference writes one for molecules)"
            )
        generator = torch.Generator().manual_seed(data.data_seed)
        return target.sample(data.n_data, generator)
    samples = load_samples(data.data, key=data.data_key)
    if tuple(samples.shape[1:]) != tuple(target.event_shape):
        raise BoltzgenError(
            f"[trainer] data file {data.data} holds samples of shape {tuple(samples.shape[1:])}; "
            f"the target's states have shape {tuple(target.event_shape)}"
        )
    return samples


@register(
    "trainer",
    "cumulant-gan",
    keys_from=[CumulantGAN, TrainingData],
    exclude=["samples", "discriminator"],
)
def _cumulant_gan(
    target: Energy, d_hidden: int = 128, d_depth: int = 2, d_seed: int = 0, **options: Any
) -> Any:
    """Cumulant GAN (Pantazis et al.): generator = the model, discriminator = an MLP on the
    target's features; data from ``data`` (module docstring).

    Arguments:
        d_hidden: Width of the discriminator's hidden layers.
        d_depth: Hidden layers of the discriminator.
        d_seed: Seed of the discriminator's initial weights.
    """
    fields = TrainingData.__dataclass_fields__
    data_keys = {k: options.pop(k) for k in list(options) if k in fields}
    source = TrainingData(**data_keys)
    samples = source.samples(target) if target.is_discrete else _continuous_data(target, source)
    parameter = next(
        (t for t in (*target.parameters(), *target.buffers()) if t.is_floating_point()), None
    )
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.get_default_dtype()
    generator_state = torch.get_rng_state()
    torch.manual_seed(d_seed)
    discriminator = Discriminator(feature_map(target), hidden=d_hidden, depth=d_depth)
    torch.set_rng_state(generator_state)
    return CumulantGAN(samples, discriminator.to(device, dtype), **options)


@register("trainer", "renyi", keys_from=[Renyi], exclude=["target"])
def _renyi(target: Energy, **options: Any) -> Any:
    """Energy-informed Rényi objective -(1/a) log E_q[(p~/q)^a] on model samples
    (:class:`~boltzgen.trainers.renyi.Renyi`; ``alpha = 0`` is reverse KL)."""
    return Renyi(target, **options)
