"""Federated learning: FedAvg, the truncated SVD and FINCH's first partition against closed forms
and planted clusters, DKDR's decoupling of two domains, the 2-process run against the in-process
simulation (bit for bit), resume after an interruption, and one-line refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from boltzgen.errors import BoltzgenError
from boltzgen.federated import (
    FederationSettings,
    decouple,
    fedavg,
    finch_first_partition,
    low_rank,
)
from boltzgen.federated.aggregation import normalized_updates


def test_fedavg_is_the_data_size_weighted_mean() -> None:
    """Three clients with 100, 200 and 700 samples: FedAvg equals (100 a + 200 b + 700 c) / 1000
    to 1e-15; sizes that are not one positive number per client are refused."""
    states = torch.randn(3, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = (100 * states[0] + 200 * states[1] + 700 * states[2]) / 1000
    assert torch.allclose(fedavg(states, torch.tensor([100.0, 200.0, 700.0])), expected, 0, 1e-15)
    for sizes in ([1.0, 2.0], [1.0, 0.0, 2.0]):
        with pytest.raises(BoltzgenError, match="data size"):
            fedavg(states, torch.tensor(sizes))


def test_low_rank_is_the_truncated_svd() -> None:
    """Rank max(1, floor(f K)) of 10 updates: the result has that rank, its error is the norm
    of the dropped singular values (Eckart-Young) to 1e-12, and f = 1 returns the input."""
    updates = torch.randn(10, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    singular = torch.linalg.svdvals(updates)
    for fraction, rank in ((0.05, 1), (0.2, 2), (0.55, 5)):
        approximation = low_rank(updates, fraction)
        assert int(torch.linalg.matrix_rank(approximation)) == rank
        error = float((updates - approximation).norm())
        assert error == pytest.approx(float(singular[rank:].norm()), abs=1e-12)
    assert torch.allclose(low_rank(updates, 1.0), updates, 0, 1e-12)
    with pytest.raises(BoltzgenError, match="rank_fraction"):
        low_rank(updates, 0.0)


def test_finch_first_partition_recovers_planted_clusters() -> None:
    """Three clusters of 4, 5 and 6 vectors around random directions in R^40 (noise 0.1 per
    component), shuffled: the first partition is exactly the planted one; a single vector is
    one cluster; the hand case of 4 points on a line gives {0, 1}, {2, 3}."""
    generator = torch.Generator().manual_seed(2)
    centres = torch.randn(3, 40, dtype=torch.float64, generator=generator)
    labels = torch.tensor([0] * 4 + [1] * 5 + [2] * 6)
    order = torch.randperm(len(labels), generator=generator)
    labels = labels[order]
    noise = 0.1 * torch.randn(len(labels), 40, dtype=torch.float64, generator=generator)
    vectors = centres[labels] + noise
    planted = sorted(sorted(torch.nonzero(labels == c).flatten().tolist()) for c in range(3))
    assert finch_first_partition(vectors) == planted
    assert finch_first_partition(vectors[:1]) == [[0]]
    line = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.1, 1.0], [0.0, 1.0]], dtype=torch.float64)
    assert finch_first_partition(line) == [[0, 1], [2, 3]]


def test_decoupling_finds_two_domains_and_their_experts() -> None:
    """Six clients, three per domain, whose updates are a shared direction plus a domain
    direction plus noise: the normalised rank-3 updates (rank_fraction 0.5) split into the two
    domains, and each expert is the data-size-weighted mean of its clients."""
    generator = torch.Generator().manual_seed(3)
    start = torch.randn(60, dtype=torch.float64, generator=generator)
    shared, up, down = torch.randn(3, 60, dtype=torch.float64, generator=generator)
    domain = [0, 1, 0, 1, 0, 1]
    noise = 0.05 * torch.randn(6, 60, dtype=torch.float64, generator=generator)
    states = start + shared + torch.stack([up if d == 0 else down for d in domain]) + noise
    sizes = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    clusters, experts = decouple(states, sizes, start, rank_fraction=0.5)
    assert clusters == [[0, 2, 4], [1, 3, 5]]
    assert torch.allclose(experts[1], (2 * states[1] + 4 * states[3] + 6 * states[5]) / 12)
    unit = normalized_updates(states, start)
    assert torch.allclose(unit.norm(dim=1), torch.ones(6, dtype=torch.float64))


def test_federation_settings_refuse_bad_values_in_one_line() -> None:
    cases = [
        ({"teachers": "everyone"}, "teachers"),
        ({"divergence": "skew"}, "divergence"),
        ({"domains": "up"}, "domains"),
        ({"domains": [{}, {}, {}], "clients": 2}, "3 domains"),
        ({"rounds": 0}, "rounds"),
        ({"rank_fraction": 1.5}, "rank_fraction"),
        ({"distill_weight": -1.0}, "distill_weight"),
    ]
    for values, message in cases:
        with pytest.raises(BoltzgenError, match=message) as raised:
            FederationSettings(**values)
        assert "\n" not in str(raised.value)


# ----------------------------------------------------------------------- runs
#: A small federation: 3 x 3 Ising (512 states), two domains h = +-0.3, 2 local steps.
SMALL = [
    "target.L=3",
    "trainer.rounds=3",
    "trainer.local_steps=3",
    "trainer.samples_per_client=200",
    "trainer.batch_size=32",
    "model.width=16",
    "sample.n=200",
]


def _config(overrides: list[str]) -> dict:
    from boltzgen.workflow.config import parse_config_text
    from boltzgen.workflow.templates import template_with

    return parse_config_text(template_with("federate-ising", [*SMALL, *overrides]))


def _model_state(run: Path) -> dict[str, torch.Tensor]:
    from boltzgen.io import load_checkpoint

    state = load_checkpoint(run / "checkpoints" / "last.pt", kind="federation")
    return {**state["model"], "experts": state["experts"]}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_make_the_simulated_run(tmp_path: Path) -> None:
    """``boltzgen federate --clients 2`` (two gloo ranks, one client each) and ``--simulate``
    (both clients in one process) end with the same global model and experts bit for bit
    (float64) and the same metrics.csv; the summary has the exact KLs per domain and pooled."""
    from torchrun import rank_environment

    from boltzgen.workflow.config import dump_config

    config = tmp_path / "federate.toml"
    config.write_text(dump_config(_config(["trainer.domains=[{}, {h = -0.3}]"])))
    base = [sys.executable, "-m", "boltzgen", "federate", str(config), "--clients", "2"]
    for name, extra in (("ranks", []), ("simulated", ["--simulate"])):
        done = subprocess.run(
            [*base, *extra, "-o", str(tmp_path / name), "--no-progress"],
            capture_output=True,
            text=True,
            env=rank_environment(),
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert _same(_model_state(tmp_path / "ranks"), _model_state(tmp_path / "simulated"))
    metrics = [(tmp_path / n / "metrics.csv").read_text() for n in ("ranks", "simulated")]
    assert metrics[0] == metrics[1] and metrics[0].count("\n") == 4
    import json

    summary = json.loads((tmp_path / "simulated" / "summary.json").read_text())
    assert summary["rounds"] == 3 and summary["energy_evaluations"] == 0
    assert 0 < summary["kl_pooled"] < summary["kl_domain_0"] + summary["kl_domain_1"]


def test_an_interrupted_federation_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch) -> None:
    """Ctrl-C during round 2 of 3 (after round 1's checkpoint), then the same command again:
    the resumed run ends with the global model and experts of an uninterrupted run, bit for
    bit, and metrics.csv has one row per round; the report shows the per-domain and pooled
    KLs."""
    from boltzgen.federated.rounds import Federation
    from boltzgen.workflow.runs import train_run

    whole = tmp_path / "whole"
    train_run(_config([]), whole, False)
    original = Federation._round

    def interrupted(self, round_index: int):
        if round_index == 1:
            raise KeyboardInterrupt
        return original(self, round_index)

    monkeypatch.setattr(Federation, "_round", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run(_config([]), tmp_path / "resumed", False)
    monkeypatch.setattr(Federation, "_round", original)
    train_run(_config([]), tmp_path / "resumed", False)
    assert _same(_model_state(whole), _model_state(tmp_path / "resumed"))
    rows = (tmp_path / "resumed" / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[1] for row in rows[1:]] == ["1", "2", "3"]
    from boltzgen.cli.main import main

    assert main(["report", str(whole), "-o", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "KL(p_pooled || q) [nats]" in page and "KL(p_domain 1 || q) [nats]" in page


def test_federate_refuses_what_it_cannot_run(tmp_path: Path, capsys) -> None:
    """One line each: a config that is not federated, more processes than allowed, a
    z2-symmetrised model."""
    from boltzgen.cli.main import main
    from boltzgen.workflow.config import dump_config
    from boltzgen.workflow.runs import train_run
    from boltzgen.workflow.templates import template_with

    (tmp_path / "smoke.toml").write_text(template_with("toy-smoke", []))
    assert main(["federate", str(tmp_path / "smoke.toml"), "--clients", "2"]) == 2
    assert 'not "federated"' in capsys.readouterr().err
    (tmp_path / "fed.toml").write_text(dump_config(_config([])))
    assert main(["federate", str(tmp_path / "fed.toml"), "--clients", "2000"]) == 2
    err = capsys.readouterr().err
    assert "--simulate" in err and err.count("\n") == 1
    with pytest.raises(BoltzgenError, match="z2"):
        train_run(_config(["model.z2=true"]), tmp_path / "z2", False)


def test_two_nodes_on_one_machine_make_the_simulated_run(tmp_path: Path) -> None:
    """Two torchrun invocations (``--nnodes 2``, one client each) meet at a c10d rendezvous on
    the loopback device, as two machines would, and end with the simulated run's global model
    and experts bit for bit."""
    from torchrun import rank_environment, two_nodes

    from boltzgen.workflow.config import dump_config

    (tmp_path / "fed.toml").write_text(dump_config(_config(["trainer.clients=2"])))
    two_nodes(tmp_path, "-m", "boltzgen", "train", "fed.toml", "-o", "nodes", "--no-progress")
    simulated = subprocess.run(
        [sys.executable, "-m", "boltzgen", "train", "fed.toml", "-o", "one", "--no-progress"],
        capture_output=True,
        text=True,
        env=rank_environment(),
        cwd=tmp_path,
        timeout=120,
    )
    assert simulated.returncode == 0, simulated.stderr[-2000:]
    assert _same(_model_state(tmp_path / "nodes"), _model_state(tmp_path / "one"))
