"""TA-BG: importance weights and buffers, annealing on an asymmetric double well, exact resume,
and ``boltzgen evaluate``.

The double well is ``DoubleWell(dim=2, n_wells=1, c=-0.4)``: u(x) = x0^4 - 6 x0^2 - 0.4 x0 +
x1^2 / 2, barrier about 9 kT, P(x0 > 0) = 0.7945 at T = 1 (1-D quadrature). Flows start narrow
in the *minor* left well. Sizes fit the 2-core budget; each test states its sample size.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from boltzgen.cli.main import main
from boltzgen.energy.toy import DoubleWell
from boltzgen.errors import BoltzgenError
from boltzgen.flows import CouplingFlow, make_prior, real
from boltzgen.io import load_checkpoint
from boltzgen.samplers.importance import WeightedSamples, draw_weighted_samples, resample_buffer
from boltzgen.trainers import ReverseKL, Trainer, TrainingInterrupted, TrainSettings
from boltzgen.trainers.annealing import (
    AnnealingSettings,
    TemperatureAnnealing,
    temperature_ladder,
)
from boltzgen.workflow.runs import load_run, train_run

BUFFER_SAMPLES = 20_000
PRETRAIN_STEPS, PRETRAIN_BATCH = 150, 256


def double_well() -> DoubleWell:
    return DoubleWell(dim=2, n_wells=1, c=-0.4).double()


def right_well_mass(target: DoubleWell, temperature: float = 1.0) -> float:
    """Exact P(x0 > 0) at ``temperature`` by quadrature on the well's own fine grid (trapezoid,
    float64)."""
    grid = target.well.grid
    log_p = -target.well(grid) / temperature
    density = np.exp(log_p - log_p.max())
    return float(np.trapezoid(density * (grid > 0), grid) / np.trapezoid(density, grid))


def left_well_flow(seed: int = 0) -> CouplingFlow:
    """A 2-layer spline flow whose prior N((-1.7, 0), diag(0.3, 1)^2) sits in the minor well."""
    torch.manual_seed(seed)
    domains = [real()] * 2
    prior = make_prior(domains, kind="normal", loc=[-1.7, 0.0], scale=[0.3, 1.0])
    return CouplingFlow(
        domains, n_layers=2, hidden=32, depth=2, bins=8, prior=prior, seed=seed
    ).double()


def annealing_settings(**overrides) -> AnnealingSettings:
    """T = 8 -> 4 -> 2 -> 1 plus one step at 1; N = 2e4, M = 1e4; 60 ML steps per rung."""
    values = dict(
        t_high=8.0,
        t_low=1.0,
        n_rungs=3,
        extra_final_rungs=1,
        pretrain_steps=PRETRAIN_STEPS,
        pretrain_batch_size=PRETRAIN_BATCH,
        pretrain_lr=1e-2,
        pretrain_warmup_steps=20,
        drop_top_k=0,
        buffer_samples=BUFFER_SAMPLES,
        resample_size=10_000,
        chunk_size=4096,
        rung_steps=60,
        rung_batch_size=256,
        rung_lr=1e-2,
        weight_decay=0.0,
        log_every=20,
        checkpoint_every=25,
        progress=False,
    )
    values.update(overrides)
    return AnnealingSettings.from_params(values)


def mass_estimates(
    model: torch.nn.Module, target: DoubleWell, n: int = 20_000
) -> tuple[float, float, float]:
    """Flow mass of x0 > 0, its self-normalised importance-weighted estimate and that estimate's
    s.e."""
    torch.manual_seed(1234)
    drawn = draw_weighted_samples(model, target, n)
    right = (drawn.samples[:, 0] > 0).double()
    w = torch.exp(drawn.log_weights - drawn.log_weights.max())
    estimate = (w * right).sum() / w.sum()
    standard_error = torch.sqrt((w**2 * (right - estimate) ** 2).sum()) / w.sum()  # delta method
    return float(right.mean()), float(estimate), float(standard_error)


@pytest.fixture(scope="module")
def annealed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TemperatureAnnealing]:
    """One uninterrupted TA-BG run (CPU, float64, seed 0) in a run directory."""
    run_dir = tmp_path_factory.mktemp("tabg")
    model = left_well_flow()
    protocol = TemperatureAnnealing(model, double_well(), annealing_settings(), run_dir)
    protocol.fit()
    return run_dir, protocol


# -- importance weights, clipping, buffers ----------------------------------------------------
def test_weights_ess_and_dropping_by_hand() -> None:
    """u_T = u * T0/T and log w = -u_T - log q; one NaN dropped; ESS of w = (1, 2, 3) is 36/42."""
    target = double_well()
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)
    u_hand = torch.tensor(
        [0.0, 1 - 6 - 0.4, 1 - 6 + 0.4 + 2.0, 16 - 24 - 0.8 + 0.5], dtype=torch.float64
    )
    u_at_2 = target.energy(x, temperature=2.0)
    assert torch.allclose(u_at_2, u_hand / 2, atol=1e-12)
    wanted_log_w = torch.tensor([0.0, math.log(2), math.log(3), math.nan], dtype=torch.float64)
    log_q = -u_at_2 - wanted_log_w
    drawn = WeightedSamples(x, log_q, u_at_2, 2.0)
    assert torch.allclose(drawn.log_weights[:3], wanted_log_w[:3], atol=1e-12)
    buffer, stats = resample_buffer(
        drawn, 30_000, clip_fraction=0.0, generator=torch.Generator().manual_seed(0)
    )
    assert stats.n_dropped == 1 and stats.n_clipped == 0
    assert stats.ess == pytest.approx(36 / 42, abs=1e-12)
    assert stats.max_weight_fraction == pytest.approx(0.5, abs=1e-12)
    # resampled frequencies 1/6, 2/6, 3/6 within 4 s.e. (multinomial, M = 3e4); the NaN state never
    counts = torch.stack([(buffer == x[i]).all(1).sum() for i in range(4)]).double()
    p = torch.tensor([1 / 6, 2 / 6, 3 / 6, 0.0], dtype=torch.float64)
    standard_error = torch.sqrt(p * (1 - p) / 30_000)
    assert torch.all((counts / 30_000 - p).abs() <= 4 * standard_error + 1e-15), counts


def test_clipping_keeps_floor_f_n_weights_at_kth_largest() -> None:
    """N = 1000 distinct log-weights, f = 0.0057: floor(fN) = 5 clipped; ESS equals NumPy's of the
    clipped weights."""
    rng = np.random.default_rng(0)
    log_w = rng.standard_normal(1000) * 2.0
    drawn = WeightedSamples(
        torch.zeros(1000, 2, dtype=torch.float64),
        torch.from_numpy(-log_w),
        torch.zeros(1000, dtype=torch.float64),
        1.0,
    )
    _, stats = resample_buffer(drawn, 10, clip_fraction=0.0057)
    kth = np.sort(log_w)[::-1][4]
    clipped = np.minimum(log_w, kth)
    assert stats.n_clipped == 5 and int((clipped == kth).sum()) == 5
    w = np.exp(clipped - clipped.max())
    assert stats.ess == pytest.approx(w.sum() ** 2 / (1000 * (w**2).sum()), rel=1e-12)


def test_chunked_draw_equals_unchunked() -> None:
    """CPU: chunks of 512 x 2 values (multiples of 16) reproduce one 4096-sample draw exactly,
    buffer too."""
    target = double_well()
    model = left_well_flow()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    results = []
    for chunk in (4096, 512):
        torch.manual_seed(7)
        drawn = draw_weighted_samples(model, target, 4096, temperature=2.0, chunk_size=chunk)
        buffer, stats = resample_buffer(
            drawn, 1000, 1e-3, generator=torch.Generator().manual_seed(3)
        )
        results.append((drawn, buffer, stats))
    (a, buffer_a, stats_a), (b, buffer_b, stats_b) = results
    assert torch.equal(a.samples, b.samples) and torch.equal(a.log_q, b.log_q)
    assert torch.equal(a.reduced_energies, b.reduced_energies)
    assert torch.equal(buffer_a, buffer_b) and stats_a == stats_b


def test_ladder_and_settings() -> None:
    """Geometric ladder T_k = 8 (1/8)^(k/3) = 8, 4, 2, 1 plus one extra 1; bad keys and ranges
    refused."""
    assert temperature_ladder(8.0, 1.0, 3, 1) == pytest.approx(
        [8.0, 4.0, 2.0, 1.0, 1.0], rel=1e-14
    )
    assert temperature_ladder(1200.0, 300.0, 9, 1)[-2:] == [300.0, 300.0]
    with pytest.raises(BoltzgenError, match="t_low <= t_high"):
        temperature_ladder(300.0, 1200.0, 9)
    with pytest.raises(BoltzgenError, match="unknown key"):
        AnnealingSettings.from_params({"name": "tabg", "t_high": 8.0, "rung_stepz": 3})
    with pytest.raises(BoltzgenError, match="resample_size"):
        AnnealingSettings(t_high=8.0, resample_size=0)
    settings = AnnealingSettings.from_params({"name": "tabg", "t_high": 8.0, "n_rungs": 2})
    protocol = TemperatureAnnealing(left_well_flow(), double_well(), settings)
    assert protocol.stages == ["pretrain", "anneal-1-T2.82843", "anneal-2-T1", "anneal-3-T1"]


# -- annealing on the asymmetric double well ----------------------------------------------------
def test_reverse_kl_at_target_temperature_stays_in_the_minor_well() -> None:
    """Plain reverse KL at T = 1 from the left-well start: < 1% of 2e4 samples reach the major well
    (exact 79%)."""
    target = double_well()
    model = left_well_flow()
    settings = TrainSettings(
        steps=PRETRAIN_STEPS, batch_size=PRETRAIN_BATCH, lr=1e-2, warmup_steps=20, progress=False
    )
    Trainer(model, ReverseKL(target), settings).fit()
    flow_mass, _, _ = mass_estimates(model, target)
    assert right_well_mass(target) == pytest.approx(0.7945, abs=1e-4)
    assert flow_mass < 0.01


def test_tabg_recovers_both_wells(annealed_run: tuple[Path, TemperatureAnnealing]) -> None:
    """TA-BG from the same start: reweighted P(x0 > 0) within 4 s.e. of the exact 0.7945 (2e4
    samples),
    the flow itself within 0.05; energy evaluations = pretraining samples + N per rung."""
    run_dir, protocol = annealed_run
    target = double_well()
    flow_mass, estimate, standard_error = mass_estimates(protocol.model, target)
    exact = right_well_mass(target)
    assert abs(estimate - exact) <= 4 * standard_error, (estimate, standard_error, exact)
    assert standard_error < 0.01
    assert abs(flow_mass - exact) < 0.05, flow_mass
    ladder = json.loads((run_dir / "ladder.json").read_text())
    assert ladder["complete"] and [r["temperature"] for r in ladder["rungs"]] == pytest.approx(
        [4.0, 2.0, 1.0, 1.0]
    )
    assert all(0.3 < r["ess"] <= 1 and r["n_samples"] == BUFFER_SAMPLES for r in ladder["rungs"])
    assert protocol.energy_evaluations == PRETRAIN_STEPS * PRETRAIN_BATCH + 4 * BUFFER_SAMPLES
    assert ladder["rungs"][-1]["energy_evaluations"] == protocol.energy_evaluations
    assert protocol.step == PRETRAIN_STEPS + 4 * 60
    final = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert all(torch.equal(final["model"][k], v) for k, v in protocol.model.state_dict().items())
    assert not list((run_dir / "checkpoints").glob("buffer-*"))


class _InterruptingEnergy(DoubleWell):
    """The same double well, raising KeyboardInterrupt at its ``stop_at``-th call (a simulated
    Ctrl-C)."""

    def __init__(self, stop_at: int) -> None:
        super().__init__(dim=2, n_wells=1, c=-0.4)
        self.calls, self.stop_at = 0, stop_at

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return super()._energy(x)


def test_resume_in_the_middle_of_the_ladder(annealed_run, tmp_path: Path) -> None:
    """Interrupted after rung 2 (callback) and again while drawing rung 3's buffer (energy call),
    then
    resumed: the final parameters equal the uninterrupted run's exactly (CPU, float64), counters
        too."""
    reference_dir, reference = annealed_run

    def stop_after_rung_2(record: dict) -> None:
        if record["rung"] == 2:
            raise KeyboardInterrupt

    first = TemperatureAnnealing(
        left_well_flow(), double_well(), annealing_settings(), tmp_path, on_rung=stop_after_rung_2
    )
    with pytest.raises(TrainingInterrupted, match="after 2 rung"):
        first.fit()
    # rung 3 draws 20000 samples in 5 chunks of 4096: stop in the middle of its draw
    second = TemperatureAnnealing(
        left_well_flow(), _InterruptingEnergy(stop_at=3).double(), annealing_settings(), tmp_path
    )
    with pytest.raises(TrainingInterrupted):
        second.fit()
    assert len(json.loads((tmp_path / "ladder.json").read_text())["rungs"]) == 2
    resumed = TemperatureAnnealing(
        left_well_flow(seed=5), double_well(), annealing_settings(), tmp_path
    )
    resumed.fit()
    for name, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    assert (
        resumed.energy_evaluations == reference.energy_evaluations
        and resumed.step == reference.step
    )
    ladder = json.loads((tmp_path / "ladder.json").read_text())
    assert [r["ess"] for r in ladder["rungs"]] == [r["ess"] for r in reference.record["rungs"]]


def test_resume_refuses_other_settings(annealed_run) -> None:
    """A run directory of other settings is refused with one line."""
    run_dir, _ = annealed_run
    with pytest.raises(BoltzgenError, match="other settings"):
        TemperatureAnnealing(
            left_well_flow(), double_well(), annealing_settings(rung_steps=61), run_dir
        ).fit()


# -- boltzgen evaluate --------------------------------------------------------------------------
def test_evaluate_toy_run_prints_the_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 40-step reverse-KL run on the double well, evaluated with 4000 samples against 3000 exact
    samples: every key present, NLL equals -mean log q recomputed from the checkpoint's model
        (1e-9),
    ESS values in [0, 1], molecule-only metrics null."""
    config = {
        "seed": 0,
        "device": "cpu",
        "dtype": "float64",
        "target": {"name": "double-well", "dim": 2, "c": -0.4},
        "model": {"name": "coupling-flow", "n_layers": 2, "hidden": 16},
        "trainer": {
            "name": "reverse-kl",
            "temperature": 2.0,
            "steps": 40,
            "batch_size": 128,
            "lr": 1e-2,
            "progress": False,
            "log_every": 20,
        },
        "sample": {"n": 100},
    }
    run_dir = tmp_path / "run"
    train_run(config, run_dir, progress=False)
    reference = double_well().sample(3000, generator=torch.Generator().manual_seed(11))
    torch.save({"samples": reference}, tmp_path / "reference.pt")
    code = main(
        [
            "evaluate",
            str(run_dir),
            "-n",
            "4000",
            "--reference",
            str(tmp_path / "reference.pt"),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    for key in (
        "ess",
        "forward_ess",
        "nll",
        "ramachandran_kl",
        "ramachandran_tv",
        "ramachandran_kl_reweighted",
        "ramachandran_tv_reweighted",
        "ramachandran_tv_floor",
        "n_samples",
        "n_reference",
        "energy_evaluations",
        "wall_time_s",
        "device",
    ):
        assert key in report, key
    assert (
        report["n_samples"] == 4000
        and report["n_reference"] == 3000
        and report["temperature"] == 2.0
    )
    assert report["energy_evaluations"] == 40 * 128
    assert 0 < report["ess"] <= 1 and 0 < report["forward_ess"] <= 1
    assert all(
        report[k] is None for k in ("ramachandran_kl", "ramachandran_tv", "ramachandran_tv_floor")
    )
    _, _, model = load_run(run_dir)
    with torch.no_grad():
        assert report["nll"] == pytest.approx(float(-model.log_prob(reference).mean()), rel=1e-9)
    # exact KL(q||p) = E_q[log q + u] + log Z: only at the target's own temperature (log Z known)
    assert report["kl"] is None
    assert main(["evaluate", str(run_dir), "-n", "20000", "--temperature", "1", "--json"]) == 0
    at_own = json.loads(capsys.readouterr().out)
    with torch.no_grad():  # an independent estimate from fresh model samples
        x, log_q = model.sample_and_log_prob(20000)
        terms = log_q + double_well().energy(x)
    error = 4 * float(terms.std()) / math.sqrt(20000)
    assert at_own["temperature"] == 1.0 and at_own["kl"] > -error
    assert at_own["kl"] == pytest.approx(float(terms.mean()) + double_well().log_z, abs=2 * error)
    assert main(["evaluate", str(tmp_path / "missing")]) == 2


def test_annealing_settings_compose_two_train_settings_and_read_old_keys() -> None:
    """A shared key of old configs (weight_decay) sets both stages, a stage key wins over it,
    and the resolved table round-trips to the same settings."""
    from boltzgen.workflow.registry import resolve_config

    old = AnnealingSettings.from_params(
        {"t_high": 8.0, "weight_decay": 1e-3, "rung_weight_decay": 0.0, "pretrain_lr": 1e-2}
    )
    assert isinstance(old.pretrain, TrainSettings) and isinstance(old.rung, TrainSettings)
    assert old.pretrain.weight_decay == 1e-3 and old.rung.weight_decay == 0.0
    assert old.pretrain.lr == 1e-2 and old.rung.lr == 5e-6  # the published rung default
    assert AnnealingSettings.from_params(old.to_params()) == old
    config = {
        "target": {"name": "double-well"},
        "model": {"name": "coupling-flow"},
        "trainer": {"name": "tabg", "t_high": 8.0, "weight_decay": 1e-3, "rung_steps": 7},
    }
    trainer = resolve_config(config)["trainer"]
    assert trainer["pretrain_weight_decay"] == trainer["rung_weight_decay"] == 1e-3
    assert trainer["rung_steps"] == 7 and trainer["weight_decay"] is None
    with pytest.raises(BoltzgenError, match="unknown key"):
        AnnealingSettings.from_params({"t_high": 8.0, "rung_stpes": 3})
