"""NaN and inf in training: masked samples, skipped steps, the stop rule, finite checkpoints.

The targets are real energies (the 8-mode Gaussian mixture, a Sherrington-Kirkpatrick glass)
made undefined on a fixed part of their domain. References: the same loss computed by hand, or by
the unmasked estimator, on the finite samples only.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from boltzgen.energy.lattice import SherringtonKirkpatrick
from boltzgen.energy.toy import GaussianMixture2D
from boltzgen.errors import BoltzgenError
from boltzgen.flows import CouplingFlow, make_prior, real
from boltzgen.io import load_checkpoint
from boltzgen.models import RBM
from boltzgen.trainers import (
    ForwardKL,
    NonFiniteTraining,
    NonFiniteWarning,
    ReverseKL,
    Trainer,
    TrainSettings,
)
from boltzgen.trainers.discrete_kl import reverse_kl_surrogate
from boltzgen.trainers.optim import MaskedAdam
from boltzgen.trainers.ratio_divergence import ratio_divergence_surrogate


class PartlyUndefinedMixture(GaussianMixture2D):
    """The 8-mode mixture, undefined where frac(1000 |x_0|) < ``fraction`` (a fixed set of thin
    stripes covering that fraction of the plane).

    ``poison``: ``"nan"`` gives a NaN energy with a NaN gradient (sqrt of a negative number),
    ``"constant"`` a NaN energy with zero gradient, ``"cusp"`` the finite mixture energy plus
    a square-root cusp at the sample (finite value, infinite gradient).
    """

    def __init__(self, fraction: float, poison: str = "nan") -> None:
        super().__init__()
        self.fraction, self.poison = fraction, poison

    def undefined(self, x: torch.Tensor) -> torch.Tensor:
        return torch.frac(1000.0 * x[:, 0].detach().abs()) < self.fraction

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        u = super()._energy(x)
        undefined = self.undefined(x)
        # the square roots see safe arguments on the defined samples (no NaN leaks through where)
        if self.poison == "nan":
            bad = torch.sqrt(torch.where(undefined, -(1.0 + x[:, 0] ** 2), 1.0))
        elif self.poison == "constant":
            bad = torch.full_like(u, float("nan"))
        else:
            bad = u + torch.sqrt(torch.where(undefined, x[:, 0] - x[:, 0].detach(), 1.0))
        return torch.where(undefined, bad, u)


def _flow(seed: int = 0) -> CouplingFlow:
    torch.manual_seed(seed)
    domains = [real()] * 2
    prior = make_prior(domains, kind="normal", loc=0.0, scale=3.0)
    return CouplingFlow(domains, n_layers=2, hidden=16, depth=1, bins=4, prior=prior)


def _grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("poison", ["nan", "constant", "cusp"])
@pytest.mark.parametrize("fraction", [0.001, 0.1])
def test_reverse_kl_leaves_out_exactly_the_undefined_samples(fraction: float, poison: str):
    """Loss and parameter gradient equal the by-hand mean of log q + u over the defined samples
    (for the cusp: over all samples, without the cusp samples' gradient through x); the count
    (complete after the backward pass) is the number of undefined samples of the batch."""
    target, model, n = PartlyUndefinedMixture(fraction, poison), _flow(), 4000
    torch.manual_seed(1)
    loss, diagnostics = ReverseKL(target).loss(model, n)
    model.zero_grad()
    loss.backward()
    masked = _grads(model)
    torch.manual_seed(1)
    x, log_q = model.sample_and_log_prob(n)
    undefined = target.undefined(x)
    if poison == "cusp":  # finite energy: kept in the loss, its gradient through x dropped
        u = GaussianMixture2D._energy(target, torch.where(undefined[:, None], x.detach(), x))
        reference = (log_q + u).mean()
    else:
        keep = ~undefined
        reference = (log_q[keep] + GaussianMixture2D._energy(target, x[keep])).mean()
    model.zero_grad()
    reference.backward()
    assert int(undefined.sum()) == int(diagnostics["nonfinite_samples"]) > 0
    assert abs(int(undefined.sum()) - fraction * n) < 5 * (fraction * n) ** 0.5 + 2
    torch.testing.assert_close(loss.detach(), reference.detach(), rtol=1e-6, atol=1e-6)
    for ours, theirs in zip(masked, _grads(model)):
        assert torch.isfinite(ours).all()
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_forward_kl_refuses_non_finite_data():
    data = torch.randn(50, 2)
    data[7, 1] = float("nan")
    with pytest.raises(BoltzgenError, match="1 of 50 samples with NaN or infinite values"):
        ForwardKL(data)


def test_discrete_estimators_equal_the_unmasked_ones_on_the_finite_samples():
    """Reverse-KL score and ratio divergence with NaN target energies on some model samples (and
    data points): the same loss and gradient as the unmasked formulas on the finite rows."""

    class PartlyUndefinedGlass(SherringtonKirkpatrick):
        def _energy(self, x: torch.Tensor) -> torch.Tensor:
            u = super()._energy(x)
            return torch.where(x[:, 0] * x[:, 1] * x[:, 2] > 0, u, torch.full_like(u, torch.nan))

    target, model = PartlyUndefinedGlass(6, beta=0.5), RBM(6, 4, "spin", 0.5, 0, torch.float64)
    generator = torch.Generator().manual_seed(3)
    y = torch.randint(0, 2, (64, 6), generator=generator).double() * 2 - 1
    x = torch.randint(0, 2, (64, 6), generator=generator).double() * 2 - 1
    x_log_p = -target.energy(x)
    good_y, good_x = torch.isfinite(target.energy(y)), torch.isfinite(x_log_p)
    cases = {
        "reverse": (
            lambda: reverse_kl_surrogate(model, target, y),
            lambda: reverse_kl_surrogate(model, target, y[good_y]),
        ),
        "rd": (
            lambda: ratio_divergence_surrogate(model, x, x_log_p, target, y),
            lambda: ratio_divergence_surrogate(
                model, x[good_x], x_log_p[good_x], target, y[good_y]
            ),
        ),
    }
    for name, (masked, reference) in cases.items():
        results = []
        for estimate in (masked, reference):
            model.zero_grad()
            loss, diagnostics = estimate()
            loss.backward()
            results.append((loss.detach(), _grads(model), diagnostics))
        (loss, grads, diagnostics), (ref_loss, ref_grads, ref_diagnostics) = results
        bad = int((~good_y).sum()) + (int((~good_x).sum()) if name == "rd" else 0)
        assert 0 < bad and int(diagnostics["nonfinite_samples"]) == bad, name
        assert int(ref_diagnostics["nonfinite_samples"]) == 0
        torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
        for ours, theirs in zip(grads, ref_grads):
            torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
        for key in set(ref_diagnostics) - {"nonfinite_samples"}:
            torch.testing.assert_close(diagnostics[key].double(), ref_diagnostics[key].double())


def test_all_undefined_steps_are_skipped_warned_about_once_and_stop_the_run(tmp_path: Path):
    """100% NaN (zero gradient): every step is skipped (not 'loss 0.0'), parameters stay, one
    warning, and training stops after max_nonfinite_steps, keeping the last checkpoint (whose
    parameters are the untouched, finite ones)."""
    model = _flow()
    before = [p.detach().clone() for p in model.parameters()]
    settings = TrainSettings(
        steps=100, batch_size=64, log_every=5, checkpoint_every=5, progress=False,
        max_nonfinite_steps=12,
    )  # fmt: skip
    trainer = Trainer(
        model, ReverseKL(PartlyUndefinedMixture(1.0, "constant")), settings, tmp_path
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(NonFiniteTraining) as stopped:
            trainer.fit()
    message = str(stopped.value)
    assert "\n" not in message
    assert "training stopped at step 15: the last 15 steps were all skipped" in message
    assert "max_nonfinite_steps = 12; 64 non-finite samples per step" in message
    assert "the last checkpoint (step 10) is kept" in message
    ours = [w for w in caught if issubclass(w.category, NonFiniteWarning)]
    assert len(ours) == 1 and "5 of the last 5 training steps were skipped" in str(ours[0].message)
    assert int(trainer.skipped) == 15 and trainer.step == 15
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 10 and int(state["skipped_steps"]) == 10
    assert all(
        torch.equal(state["model"][n], b) for (n, _), b in zip(model.named_parameters(), before)
    )


def test_ten_percent_undefined_trains_without_skips_and_counts_them(tmp_path: Path):
    model = _flow()
    settings = TrainSettings(steps=20, batch_size=256, log_every=10, checkpoint_every=0,
                             progress=False)  # fmt: skip
    trainer = Trainer(model, ReverseKL(PartlyUndefinedMixture(0.1, "nan")), settings, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWarning)
        last = trainer.fit()
    assert int(trainer.skipped) == 0 and last["skipped_steps"] == 0
    assert abs(last["nonfinite_samples"] - 25.6) < 8  # 10% of 256; sd of a 10-step mean ~1.5
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",").count("nonfinite_samples") == 1 and len(rows) == 3


def test_huge_learning_rate_never_puts_non_finite_numbers_in_a_checkpoint(tmp_path: Path):
    """lr = 1e30: updates that overflow are refused, the run stops after max_nonfinite_steps
    consecutive skips, and every tensor of the checkpoint on disk is finite. (The range check
    refuses lr > 10; the value is set past it, as code holding the settings object could.)"""
    model = _flow()
    with pytest.raises(BoltzgenError, match=r"lr = 1e\+30 is out of range: allowed a number > 0"):
        TrainSettings(lr=1e30)
    settings = TrainSettings(
        steps=200, batch_size=64, log_every=5, checkpoint_every=5, progress=False,
        max_nonfinite_steps=10,
    )  # fmt: skip
    settings.lr = 1e30
    trainer = Trainer(model, ReverseKL(GaussianMixture2D()), settings, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        with pytest.raises(NonFiniteTraining, match="the last checkpoint"):
            trainer.fit()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    tensors = [state["model"][name] for name, _ in model.named_parameters()]
    tensors += [*state["optimizer"]["exp_avg"], *state["optimizer"]["exp_avg_sq"]]
    assert all(torch.isfinite(t).all() for t in tensors)


def test_checkpoint_with_non_finite_parameters_is_not_written(tmp_path: Path):
    model = _flow()
    settings = TrainSettings(steps=3, batch_size=32, checkpoint_every=0, progress=False)
    trainer = Trainer(model, ReverseKL(GaussianMixture2D()), settings, tmp_path)
    trainer.fit()
    path = tmp_path / "checkpoints" / "last.pt"
    saved = path.read_bytes()
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.warns(NonFiniteWarning, match=r"not written at step 3: model\.\S+ hold NaN"):
        trainer.save()
    assert path.read_bytes() == saved


def test_masked_adam_refuses_an_update_that_overflows():
    param = torch.nn.Parameter(torch.ones(3))
    opt = MaskedAdam([param], lr=1e-3)
    param.grad = torch.full((3,), 1e30)  # finite, but g * g overflows float32
    accepted = opt.step(torch.tensor(True))
    assert not bool(accepted) and int(opt.accepted) == 0
    assert torch.equal(param.detach(), torch.ones(3)) and torch.equal(
        opt.exp_avg_sq[0], torch.zeros(3)
    )
