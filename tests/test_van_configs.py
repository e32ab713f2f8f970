"""The autoregressive models through configs and the CLI: the van-ising and van-sk templates end
to end (shrunk with --set), the summary's free-energy numbers against brute-force NumPy sums, and
every discrete objective on made / pixelcnn from a config."""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from boltzgen.cli.main import main
from boltzgen.errors import BoltzgenError
from boltzgen.io import load_checkpoint
from boltzgen.models import MADE, PixelCNN
from boltzgen.workflow.config import apply_overrides, parse_config_text
from boltzgen.workflow.registry import build_model, build_target, resolve_config
from boltzgen.workflow.runs import train_run
from boltzgen.workflow.templates import template_names, template_text


def _states(n: int) -> np.ndarray:
    return np.array(list(itertools.product([-1.0, 1.0], repeat=n)))


def _logsumexp(values: np.ndarray) -> float:
    shift = values.max()
    return float(shift + np.log(np.exp(values - shift).sum()))


def _sk_log_z(n: int, beta: float, seed: int) -> float:
    upper = np.triu(np.random.default_rng(seed).standard_normal((n, n)) / math.sqrt(n), k=1)
    states = _states(n)
    return _logsumexp(beta * 0.5 * np.einsum("si,ij,sj->s", states, upper + upper.T, states))


def _ising_log_z(L: int, beta: float) -> float:
    grids = _states(L * L).reshape(-1, L, L)
    bonds = (grids * np.roll(grids, -1, 1)).sum((1, 2)) + (grids * np.roll(grids, -1, 2)).sum(
        (1, 2)
    )
    return _logsumexp(beta * bonds)


#: template -> (--set overrides that shrink it, N, beta, brute-force log Z)
SHRUNK = {
    "van-sk": (["target.n=12", "trainer.steps=20"], 12, 1.5, lambda: _sk_log_z(12, 1.5, 0)),
    "van-ising": (
        ["target.L=4", "trainer.steps=4", "model.half_kernel_size=2", "model.width=4"],
        16,
        0.44,
        lambda: _ising_log_z(4, 0.44),
    ),
}


@pytest.mark.parametrize("name", list(SHRUNK))
def test_van_template_trains_end_to_end(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``boltzgen init`` + ``boltzgen train --json`` on the template, shrunk by --set (N = 12 or
    16 so that NumPy can enumerate). The summary's F_q equals mean(log q + u) / (beta N) over the
    written samples, its s.e. their std / (beta N sqrt(n)); its exact F equals -log Z / (beta N)
    with a brute-force log Z (1e-5: float32 couplings); F_q - F agrees with the summary's exact
    KL(q||p) / (beta N) within 4 s.e.; the log Z estimate is the log-mean of the weights."""
    assert name in template_names()
    overrides, n, beta, log_z = SHRUNK[name]
    config = tmp_path / f"{name}.toml"
    assert main(["init", name, "-o", str(config)]) == 0
    run_dir = tmp_path / "run"
    capsys.readouterr()
    sets = [*overrides, "sample.n=2000", "device='cpu'", "trainer.progress=false"]
    code = main(
        [
            "train",
            str(config),
            "-o",
            str(run_dir),
            "--json",
            *[a for s in sets for a in ("--set", s)],
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    expected_log_z = log_z()
    assert summary["log_z"] == pytest.approx(expected_log_z, abs=1e-5)
    assert summary["exact_free_energy_per_site"] == pytest.approx(
        -expected_log_z / (beta * n), abs=1e-6
    )
    drawn = torch.load(run_dir / "samples" / "samples.pt", weights_only=True)
    per_site = (drawn["log_q"].double() + drawn["reduced_energies"].double()) / (beta * n)
    assert summary["free_energy_per_site"] == pytest.approx(float(per_site.mean()), abs=1e-9)
    standard_error = float(per_site.std()) / math.sqrt(2000)
    assert summary["free_energy_standard_error"] == pytest.approx(standard_error, rel=1e-6)
    log_w = drawn["log_weights"].double()
    assert summary["log_z_estimate"] == pytest.approx(
        float(torch.logsumexp(log_w, 0)) - math.log(2000), abs=1e-9
    )
    gap = summary["exact_reverse_kl"] / (beta * n)
    assert abs(summary["free_energy_error"] - gap) < 4 * standard_error
    assert summary["free_energy_error"] == pytest.approx(
        summary["free_energy_per_site"] - summary["exact_free_energy_per_site"]
    )
    assert 0 < summary["ess"] <= 1 and summary["log_z_model"] == pytest.approx(0.0, abs=1e-9)
    assert summary["log_z_error"] == pytest.approx(summary["log_z_estimate"] - summary["log_z"])
    model = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    assert any("mask" in key or "vertical" in key for key in model)


def test_full_templates_resolve_to_the_documented_models() -> None:
    """van-ising is an 8 x 8 PixelCNN, van-sk an N = 20 MADE, both with reverse-kl-score."""
    for name, cls, n in (("van-ising", PixelCNN, 64), ("van-sk", MADE, 20)):
        resolved = resolve_config(parse_config_text(template_text(name)))
        resolved["device"] = "cpu"
        model = build_model(resolved, build_target(resolved))
        assert isinstance(model, cls) and model.n_sites == n and model.z2
        assert resolved["trainer"]["name"] == "reverse-kl-score"


TINY = """
seed = 0
device = "cpu"
dtype = "float64"
[target]
name = "curie-weiss"
n = 8
beta = 1.5
[model]
name = "made"
depth = 1
width = 16
[trainer]
name = "{objective}"
n_data = 4000
steps = 150
batch_size = 128
lr = 2e-2
min_lr_factor = 1.0
log_every = 50
checkpoint_every = 0
progress = false
[sample]
n = 500
"""


@pytest.mark.parametrize(
    "objective", ["forward-kl-pcd", "forward-reverse-kl", "ratio-divergence", "reverse-kl-score"]
)
def test_every_discrete_objective_trains_made(objective: str, tmp_path: Path) -> None:
    """150 steps of each objective on Curie-Weiss N = 8 (beta = 1.5, two modes) with a one-layer
    MADE: the exact forward + reverse KL (enumeration) falls below 1/5 of the initial value
    (forward KL here is exact maximum likelihood, the others use exact model samples)."""
    text = TINY.format(objective=objective)
    if objective == "reverse-kl-score":
        text = text.replace("n_data = 4000\n", "")
    config = parse_config_text(text)
    resolved = resolve_config(config)
    target = build_target(resolved)
    initial = build_model(resolved, target)
    log_p = target.exact().log_prob

    def both_kls(model: torch.nn.Module) -> float:
        log_q = model.exact().log_prob
        p, q = log_p.exp(), log_q.exp()
        return float((p * (log_p - log_q)).sum() + (q * (log_q - log_p)).sum())

    start = both_kls(initial)
    summary = train_run(config, tmp_path / "run", progress=False)
    end = summary["exact_forward_kl"] + summary["exact_reverse_kl"]
    assert start > 1.0 and end < start / 5, (objective, start, end)


def _pixelcnn_on(target: dict[str, Any]) -> dict[str, Any]:
    config = parse_config_text(
        TINY.format(objective="reverse-kl-score").replace("n_data = 4000\n", "")
    )
    config["target"] = target
    config["model"] = {"name": "pixelcnn"}
    return config


def test_pixelcnn_needs_a_lattice_target(tmp_path: Path) -> None:
    """A pixelcnn on a non-lattice target, a kernel wider than the lattice and an unknown
    baseline fail with one line."""
    with pytest.raises(BoltzgenError, match=r"\[model\] pixelcnn needs an L x L lattice target"):
        train_run(_pixelcnn_on({"name": "sk", "n": 9}), tmp_path / "a", progress=False)
    config = _pixelcnn_on({"name": "ising", "L": 2})
    with pytest.raises(BoltzgenError, match="half_kernel_size <= L = 2"):
        train_run(copy.deepcopy(config), tmp_path / "b", progress=False)
    config["model"]["half_kernel_size"] = 1
    config["trainer"]["baseline"] = "median"
    with pytest.raises(BoltzgenError, match="baseline = 'median'"):
        train_run(config, tmp_path / "c", progress=False)


def test_beta_schedule_summary_against_brute_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """van-sk shrunk to N = 10 with betas = [0.5, 1.0, 1.5], 10 steps each, no annealing: the
    summary lists one row per beta whose exact F per site is -log Z / (beta N) with a brute-force
    log Z at that beta (1e-5: float32 couplings), and whose error is F_q - F; a schedule entry
    out of range or not ending at the target's beta exits 2 with one line."""
    config = tmp_path / "van-sk.toml"
    assert main(["init", "van-sk", "-o", str(config)]) == 0
    sets = [
        "target.n=10",
        "trainer.steps=30",
        "trainer.betas=[0.5, 1.0, 1.5]",
        "trainer.steps_per_beta=10",
        "trainer.beta_anneal=0.0",
        "sample.n=500",
        "device='cpu'",
        "trainer.progress=false",
    ]
    capsys.readouterr()
    args = ["train", str(config), "--json", *[a for s in sets for a in ("--set", s)]]
    assert main([*args, "-o", str(tmp_path / "run")]) == 0
    rows = json.loads(capsys.readouterr().out)["beta_schedule"]
    assert [row["schedule_beta"] for row in rows] == [0.5, 1.0, 1.5]
    for row in rows:
        assert row["beta"] == pytest.approx(row["schedule_beta"], rel=1e-12)
        exact = -_sk_log_z(10, row["beta"], 0) / (row["beta"] * 10)
        assert row["exact_free_energy_per_site"] == pytest.approx(exact, abs=1e-5)
        error = row["free_energy_per_site"] - exact
        assert row["free_energy_error"] == pytest.approx(error, abs=1e-5)
        assert row["free_energy_standard_error"] > 0 and 0 < row["ess"] <= 1
    for bad, message in (
        ("trainer.betas=[0.5, 5000.0, 1.5]", "[trainer] betas[1] = 5000.0 is out of range"),
        ("trainer.betas=[0.5, 1.0]", "betas ends at 1 but the target's beta is 1.5"),
    ):
        assert main([*args, "--set", bad, "-o", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def _potts(objective: str, *overrides: str) -> dict[str, Any]:
    """TINY's made and settings on the 3 x 3, q = 3 Potts torus at beta = 0.8 (exact data)."""
    config = parse_config_text(TINY.format(objective=objective))
    config["target"] = {"name": "potts", "L": 3, "q": 3, "beta": 0.8}
    return apply_overrides(config, list(overrides))


@pytest.mark.parametrize(
    "objective", ["forward-kl-pcd", "forward-reverse-kl", "ratio-divergence", "cumulant-gan"]
)
def test_data_objectives_train_a_categorical_made(objective: str, tmp_path: Path) -> None:
    """150 steps on exact Potts samples (K-state units): the exact KL(p||q) by enumeration ends
    below half its value for the initial model (forward KL is exact maximum likelihood). The GAN
    (its discriminator reads one-hot codes; score-function generator gradient) learns more
    slowly: 300 steps at the gan-ising template's rates, below 3/4."""
    factor, gan = 0.5, []
    if objective == "cumulant-gan":
        factor = 0.75
        gan = ["trainer.steps=300", "trainer.lr=2e-3", "trainer.d_lr=1e-3", "trainer.d_hidden=64"]
    summary = train_run(_potts(objective, *gan), tmp_path / "run", progress=False)
    initial = train_run(
        _potts(objective, "trainer.steps=1", "trainer.lr=1e-12"),
        tmp_path / "initial",
        progress=False,
    )
    assert summary["exact_forward_kl"] < factor * initial["exact_forward_kl"], objective


def test_a_potts_target_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    """One-line errors, nothing left behind: an rbm or mcmc data on a Potts target, a data file
    with a value outside 0 .. q-1."""
    rbm = _potts("forward-kl-pcd")
    rbm["model"] = {"name": "rbm"}
    with pytest.raises(BoltzgenError, match="rbm has two-state units"):
        train_run(rbm, tmp_path / "a", progress=False)
    with pytest.raises(BoltzgenError, match="no sampler for the Potts model"):
        train_run(_potts("forward-kl-pcd", "trainer.data='mcmc'"), tmp_path / "b", progress=False)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((10, 9), 3.0))
    with pytest.raises(BoltzgenError, match=r"values other than \[0\.0, 1\.0, 2\.0\]"):
        train_run(
            _potts("forward-kl-pcd", f"trainer.data='{bad}'"), tmp_path / "c", progress=False
        )
    assert not (tmp_path / "c").exists()
