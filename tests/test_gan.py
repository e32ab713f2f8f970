"""Cumulant GAN and the energy-informed Rényi objective: discrete gradient estimators against
autograd of the exact objectives by enumeration, Rényi's reverse-KL limit, stability, exact
resume of the discriminator, Lipschitz constraints, clear refusals, and the templates end to end.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from boltzgen.energy.exact import enumerate_states
from boltzgen.energy.lattice import SherringtonKirkpatrick
from boltzgen.energy.toy import GaussianMixture2D
from boltzgen.errors import BoltzgenError
from boltzgen.flows import CouplingFlow
from boltzgen.flows.domains import real
from boltzgen.flows.priors import make_prior
from boltzgen.models import MADE, RBM
from boltzgen.trainers.cumulant import cumulant_term, log_mean_exp, score_coefficients
from boltzgen.trainers.discrete_kl import reverse_kl_surrogate
from boltzgen.trainers.discriminator import Discriminator, FlatFeatures
from boltzgen.trainers.gan import CumulantGAN, generator_surrogate
from boltzgen.trainers.loop import Trainer, TrainingInterrupted, TrainSettings
from boltzgen.trainers.renyi import Renyi
from boltzgen.trainers.reverse_kl import ReverseKL
from boltzgen.workflow.config import apply_overrides, parse_config_text
from boltzgen.workflow.runs import train_run
from boltzgen.workflow.templates import template_text

N_SPINS = 6


def _made(seed: int = 0) -> MADE:
    torch.manual_seed(seed)
    model = MADE(N_SPINS, depth=1, width=8).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model


def _discriminator(n: int, seed: int = 1) -> Discriminator:
    torch.manual_seed(seed)
    return Discriminator(FlatFeatures(n), hidden=16, depth=1).double()


def _flat_grad(loss: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


def _all_states() -> torch.Tensor:
    return torch.cat(list(enumerate_states(N_SPINS)))


def _compare(exact: torch.Tensor, estimate, model, n_batches: int = 40) -> None:
    """Every component of the mean of ``n_batches`` estimates within 4 s.e. of ``exact``; the
    exact gradient is well resolved (its largest component exceeds 10 s.e.)."""
    torch.manual_seed(7)
    estimates = torch.stack([_flat_grad(estimate(), model) for _ in range(n_batches)])
    mean, error = estimates.mean(0), estimates.std(0) / math.sqrt(n_batches)
    z = (mean - exact).abs() / (error + 1e-15)
    assert bool(((mean - exact).abs() <= 4 * error + 1e-12).all()), float(z.max())
    assert float(exact.abs().max()) > 10 * float(error.max())


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_discrete_generator_gradient_matches_enumeration(gamma: float) -> None:
    """MADE on N = 6 spins, a fixed random discriminator: the score-function generator gradient
    (40 batches of 4000 exact model samples) matches autograd of the exact
    -(1/gamma) log sum_s q(s) exp(gamma D(s)) within 4 s.e. (the ratio estimator's O(1/M) bias
    is far below that at M = 4000)."""
    model, discriminator = _made(), _discriminator(N_SPINS)
    states = _all_states()
    with torch.no_grad():
        scores = discriminator(states)
    log_q = model.log_prob(states)
    if gamma == 0:
        exact_objective = -(log_q.exp() * scores).sum()
    else:
        exact_objective = -torch.logsumexp(log_q + gamma * scores, 0) / gamma
    exact = _flat_grad(exact_objective, model)
    _compare(exact, lambda: generator_surrogate(model, discriminator, gamma, 4000)[0], model)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.9])
def test_discrete_renyi_gradient_matches_enumeration(alpha: float) -> None:
    """SK N = 6 at beta = 1.5: the Rényi score-function gradient matches autograd of the exact
    J_a = -(1/a) log sum_s q(s)^(1-a) p~(s)^a within 4 s.e."""
    target = SherringtonKirkpatrick(N_SPINS, 1.5, seed=4).double()
    model = _made()
    states = _all_states()
    log_q = model.log_prob(states)
    exact_objective = -torch.logsumexp((1 - alpha) * log_q - alpha * target.energy(states), 0)
    exact = _flat_grad(exact_objective / alpha, model)
    objective = Renyi(target, alpha=alpha)
    _compare(exact, lambda: objective.loss(model, 4000)[0], model)


def test_renyi_at_zero_is_reverse_kl() -> None:
    """On the same samples, Rényi at alpha = 0 gives exactly the VAN reverse-KL surrogate's
    gradient (score function) and, for a flow, exactly ReverseKL's loss (pathwise); alpha = 1e-6
    agrees with it to 1e-4 relative."""
    target = SherringtonKirkpatrick(N_SPINS, 1.5, seed=4).double()
    model = _made()

    def gradient(objective_loss) -> torch.Tensor:
        torch.manual_seed(3)
        return _flat_grad(objective_loss(), model)

    reference = gradient(lambda: reverse_kl_surrogate(model, target, model.sample(512))[0])
    at_zero = gradient(lambda: Renyi(target, alpha=0.0).loss(model, 512)[0])
    near_zero = gradient(lambda: Renyi(target, alpha=1e-6).loss(model, 512)[0])
    assert torch.allclose(at_zero, reference, rtol=1e-12, atol=1e-14)
    assert float((near_zero - reference).norm() / reference.norm()) < 1e-4

    mixture = GaussianMixture2D().double()
    domains = [real()] * 2
    flow = CouplingFlow(
        domains, n_layers=2, hidden=8, prior=make_prior(domains, kind="normal", loc=0.0, scale=1.0)
    ).double()
    torch.manual_seed(5)
    reverse_kl, _ = ReverseKL(mixture).loss(flow, 64)
    torch.manual_seed(5)
    renyi, diagnostics = Renyi(mixture, alpha=0.0).loss(flow, 64)
    assert float(renyi.detach()) == float(reverse_kl.detach())
    assert float(diagnostics["renyi_divergence"]) == pytest.approx(float(diagnostics["kl"]))


def test_log_mean_exp_is_stable_and_masked() -> None:
    """|gamma D| ~ 1e3 with a NaN entry masked out: finite value and gradient, equal to the
    closed form; the score coefficients stay finite too."""
    d = torch.tensor([1000.0, 999.0, -1000.0, float("nan")], dtype=torch.float64)
    keep = torch.isfinite(d)
    d_safe = torch.where(keep, d, torch.zeros_like(d)).requires_grad_(True)
    for gamma in (1.0, -1.0):
        value = cumulant_term(d_safe, gamma, keep)
        (grad,) = torch.autograd.grad(value, d_safe)
        assert torch.isfinite(value) and bool(torch.isfinite(grad).all())
    value = log_mean_exp(d_safe, keep)
    assert float(value) == pytest.approx(1000.0 + math.log((1 + math.exp(-1.0)) / 3), abs=1e-9)
    assert bool(torch.isfinite(score_coefficients(d_safe.detach(), 1.0, keep)).all())


def _mixture_gan(tmp_lipschitz: str = "none", **options) -> tuple[CouplingFlow, CumulantGAN]:
    mixture = GaussianMixture2D()
    domains = [real()] * 2
    torch.manual_seed(0)
    flow = CouplingFlow(
        domains,
        n_layers=2,
        hidden=16,
        prior=make_prior(domains, kind="normal", loc=0.0, scale=2.0),
    )
    data = mixture.sample(2000, torch.Generator().manual_seed(0)).float()
    torch.manual_seed(1)
    discriminator = Discriminator(FlatFeatures(2), hidden=16, depth=2)
    gan = CumulantGAN(data, discriminator, lipschitz=tmp_lipschitz, **options)
    return flow, gan


class _Interrupting(CumulantGAN):
    """The GAN, raising KeyboardInterrupt at its ``stop_at``-th loss call (a Ctrl-C in a step)."""

    stop_at = 6

    def loss(self, model, batch_size):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return super().loss(model, batch_size)


def test_gan_resumes_exactly_with_its_discriminator(tmp_path: Path) -> None:
    """Interrupted inside step 6 (last checkpoint: step 3), resumed: generator, discriminator and
    its Adam moments end bit for bit where an uninterrupted 8-step run ends."""
    settings = TrainSettings(steps=8, batch_size=64, checkpoint_every=3, progress=False)
    flow, gan = _mixture_gan(d_steps=2)
    Trainer(flow, gan, settings, run_dir=tmp_path / "reference").fit()

    flow_a, gan_a = _mixture_gan(d_steps=2)
    gan_a.__class__ = _Interrupting
    with pytest.raises(TrainingInterrupted):
        Trainer(flow_a, gan_a, settings, run_dir=tmp_path / "run").fit()
    flow_b, gan_b = _mixture_gan(d_steps=2)
    Trainer(flow_b, gan_b, settings, run_dir=tmp_path / "run").fit()
    for mine, theirs in zip(flow_b.parameters(), flow.parameters()):
        assert torch.equal(mine, theirs)
    for mine, theirs in zip(gan_b.discriminator.parameters(), gan.discriminator.parameters()):
        assert torch.equal(mine, theirs)
    assert torch.equal(gan_b.optimizer.exp_avg_sq[0], gan.optimizer.exp_avg_sq[0])
    assert gan_b.d_updates == gan.d_updates == 16

    flow_c, gan_c = _mixture_gan(d_steps=3)
    with pytest.raises(BoltzgenError, match="d_steps = 2"):
        Trainer(flow_c, gan_c, settings, run_dir=tmp_path / "run").fit()


def test_lipschitz_constraints() -> None:
    """Weight clipping keeps every discriminator parameter in [-c, c]; the gradient penalty
    trains with finite values; beta = gamma = 0 without a constraint is refused."""
    flow, gan = _mixture_gan("clip", beta=0.0, gamma=0.0, clip_value=0.02)
    Trainer(flow, gan, TrainSettings(steps=5, batch_size=64, progress=False)).fit()
    assert all(float(p.abs().max()) <= 0.02 for p in gan.discriminator.parameters())
    flow, gan = _mixture_gan("gp", beta=0.0, gamma=0.0)
    diagnostics = Trainer(flow, gan, TrainSettings(steps=5, batch_size=64, progress=False)).fit()
    assert math.isfinite(diagnostics["gan_objective"])
    assert float(gan.optimizer.accepted) == 5
    with pytest.raises(BoltzgenError, match="Wasserstein dual, unbounded"):
        _mixture_gan(beta=0.0, gamma=0.0)


def test_gan_refuses_unusable_generators_and_data() -> None:
    """An RBM (no exact samples) as generator, NaN data and mcmc data for a continuous target
    are refused with one line each."""
    _, gan = _mixture_gan()
    with pytest.raises(BoltzgenError, match="needs a generator with exact samples"):
        gan.loss(RBM(2, 2), 8)
    with pytest.raises(BoltzgenError, match="NaN or infinite"):
        CumulantGAN(torch.full((4, 2), float("nan")), _discriminator(2))
    config = parse_config_text(template_text("gan-gaussian-mixture"))
    with pytest.raises(BoltzgenError, match='"mcmc" is for discrete targets'):
        train_run(apply_overrides(config, ['trainer.data="mcmc"']), Path("unused"), False)
    assert not Path("unused").exists()


@pytest.mark.parametrize("name", ["gan-gaussian-mixture", "gan-ising"])
def test_gan_templates_train_end_to_end(name: str, tmp_path: Path) -> None:
    """The lattice and toy GAN templates train (shrunk) from the config, write a checkpoint with
    the discriminator, and evaluate (ESS in (0, 1])."""
    config = apply_overrides(
        parse_config_text(template_text(name)),
        [
            "trainer.steps=3",
            "trainer.batch_size=16",
            "trainer.n_data=200",
            "trainer.mcmc_burn_in=5",
            "trainer.mcmc_chains=16",
            "sample.n=64",
            'device="cpu"',
        ],
    )
    summary = train_run(config, tmp_path / "run", progress=False)
    assert 0.0 < summary["ess"] <= 1.0 and summary["energy_evaluations"] == 0
    from boltzgen.io import load_checkpoint

    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["objective"]["d_updates"] == 3 * config["trainer"]["d_steps"]


@pytest.mark.parametrize("template", ["van-sk", "van-ising"])
def test_renyi_trains_autoregressive_models_from_a_config(template: str, tmp_path: Path) -> None:
    """renyi on made (van-sk) and pixelcnn (van-ising): 3 steps from the config, energy
    evaluations counted, the Rényi diagnostics in the metrics."""
    config = parse_config_text(template_text(template))
    config["trainer"] = {"name": "renyi", "alpha": 0.5, "steps": 3, "batch_size": 16}
    config = apply_overrides(config, ["sample.n=64", 'device="cpu"'])
    summary = train_run(config, tmp_path / "run", progress=False)
    assert summary["energy_evaluations"] == 3 * 16
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "renyi" in header.split(",")
