"""Checkpoint integrity: flipped bytes, incomplete checkpoints, non-files and stale temporaries.

Every refusal is one ``boltzgen: error:`` line on stderr with exit code 2 and no traceback. The
checkpoints are those of a real 20-step training run of a 4-D double well (about 0.5 s), made
once per module; each test works on its own copy.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from boltzgen.cli.main import main
from boltzgen.energy.base import Energy
from boltzgen.errors import BoltzgenError
from boltzgen.io import (
    CHECKPOINT_FORMAT,
    CorruptedCheckpoint,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from boltzgen.io.checkpoints import state_digest
from boltzgen.md import MDRun, ReplicaExchangeMD

CONFIG = """
seed = 7
device = "cpu"
dtype = "float32"
[target]
name = "double-well"
dim = 4
[model]
name = "coupling-flow"
n_layers = 2
hidden = 16
[trainer]
name = "reverse-kl"
steps = 20
batch_size = 64
lr = 2e-3
log_every = 5
checkpoint_every = 10
[sample]
n = 100
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config, run directory) of a finished 20-step run."""
    root = tmp_path_factory.mktemp("trained")
    config = root / "tiny.toml"
    config.write_text(CONFIG)
    assert main(["train", str(config), "-o", str(root / "run"), "--no-progress", "--json"]) == 0
    return config, root / "run"


@pytest.fixture
def run(trained: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the trained run: (config, run directory)."""
    config, source = trained
    shutil.copytree(source, tmp_path / "run")
    return config, tmp_path / "run"


def _checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.pt"


def _train(config: Path, run_dir: Path) -> list[str]:
    return ["train", str(config), "-o", str(run_dir), "--no-progress", "--json"]


def _one_error_line(stderr: str, *fragments: str) -> str:
    """The stderr of a refused command: one ``boltzgen: error:`` line holding ``fragments``."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("boltzgen: error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "boltzgen", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _flip_byte_of(path: Path, tensor: torch.Tensor) -> None:
    """Flip one bit of the high byte of a middle element of ``tensor``'s payload in ``path``
    (found by its bytes, which occur once in the file)."""
    raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
    data = bytearray(path.read_bytes())
    at = data.find(raw)
    assert at >= 0 and data.find(raw, at + 1) < 0, "the payload must occur exactly once"
    middle = (tensor.numel() // 2) * tensor.element_size()
    data[at + middle + tensor.element_size() - 1] ^= 0x40  # an exponent bit of a float32
    path.write_bytes(bytes(data))


def _largest(tensors: Any) -> torch.Tensor:
    values = list(tensors.values()) if isinstance(tensors, dict) else list(tensors)
    return max(values, key=lambda t: t.numel())


# -- bit flips -------------------------------------------------------------------------------
def test_a_flipped_byte_in_a_model_tensor_is_refused_by_sample_and_resume(
    run: tuple[Path, Path],
) -> None:
    """Real processes: ``sample`` and the resume of ``train`` exit 2 with one line."""
    config, run_dir = run
    path = _checkpoint(run_dir)
    before = load_checkpoint(path)
    _flip_byte_of(path, _largest(before["model"]))
    sampled = _cli("sample", str(run_dir), "-n", "10", "-o", str(run_dir / "s.pt"))
    assert sampled.returncode == 2
    _one_error_line(sampled.stderr, str(path), "corrupted", "start a new run")
    assert not (run_dir / "s.pt").exists()
    resumed = _cli(*_train(config, run_dir))
    assert resumed.returncode == 2
    _one_error_line(resumed.stderr, "corrupted")


def test_a_flipped_byte_in_an_adam_moment_is_refused_on_resume_and_by_evaluate(
    run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, run_dir = run
    path = _checkpoint(run_dir)
    _flip_byte_of(path, _largest(load_checkpoint(path)["optimizer"]["exp_avg_sq"]))
    capsys.readouterr()
    assert main(_train(config, run_dir)) == 2
    _one_error_line(capsys.readouterr().err, "corrupted", "CRC-32")
    assert main(["evaluate", str(run_dir), "-n", "10"]) == 2
    _one_error_line(capsys.readouterr().err, "corrupted")


def test_changed_content_with_valid_crcs_fails_the_digest(run: tuple[Path, Path]) -> None:
    """A checkpoint rewritten by torch.save (fresh zip CRC-32s) with one value changed and the
    old digest: only the SHA-256 digest can tell, and it does."""
    _, run_dir = run
    path = _checkpoint(run_dir)
    state = load_checkpoint(path)
    stored = state_digest(state)
    state["optimizer"]["exp_avg"][0].view(-1)[0] += 1e-3
    torch.save({**state, "digest": stored}, path)
    with pytest.raises(CorruptedCheckpoint, match="does not match the SHA-256 digest") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    torch.save({**state, "format": CHECKPOINT_FORMAT}, path)  # no digest at all
    with pytest.raises(CorruptedCheckpoint, match="digest is missing"):
        load_checkpoint(path)


def test_the_digest_covers_values_dtypes_shapes_and_plain_content() -> None:
    base = {"step": 3, "model": {"w": torch.arange(6.0)}, "name": "x", "list": [1, (2, None)]}
    digest = state_digest(base)
    assert state_digest(dict(reversed(list(base.items())))) == digest  # key order: irrelevant
    variants = [
        {**base, "step": 4},
        {**base, "step": 3.0},
        {**base, "step": True},
        {**base, "name": "y"},
        {**base, "list": [1, [2, None]]},
        {**base, "model": {"w": torch.arange(6.0).reshape(2, 3)}},  # same bytes, other shape
        {**base, "model": {"w": torch.arange(6.0).double()}},
        {**base, "model": {"w": torch.arange(6.0).view(torch.int32)}},  # same bytes, other dtype
        {**base, "model": {"v": torch.arange(6.0)}},
        {**base, "model": {"w": torch.arange(6.0) + torch.tensor([0, 0, 0, 0, 0, 1e-6])}},
    ]
    digests = {state_digest(v) for v in variants}
    assert digest not in digests and len(digests) == len(variants)
    strided = torch.arange(12.0).reshape(3, 4).t()  # a non-contiguous view
    assert state_digest({"w": strided}) == state_digest({"w": strided.contiguous()})


def test_a_v1_checkpoint_without_digest_is_accepted_and_checked_by_its_crcs(
    tmp_path: Path,
) -> None:
    """Checkpoints written before the digest existed still load (CRC-32s only)."""
    path = tmp_path / "old.pt"
    weights = torch.randn(64, 8)
    torch.save({"format": "boltzgen-checkpoint-v1", "model": {"w": weights}, "step": 1}, path)
    state = load_checkpoint(path, kind="model")
    assert state["format"] == "boltzgen-checkpoint-v1" and torch.equal(
        state["model"]["w"], weights
    )
    save_checkpoint(path, state)  # saving it again makes a v2 checkpoint with a digest
    assert load_checkpoint(path)["format"] == CHECKPOINT_FORMAT
    torch.save({"format": "boltzgen-checkpoint-v1", "model": {"w": weights}, "step": 1}, path)
    _flip_byte_of(path, weights)
    with pytest.raises(CorruptedCheckpoint, match="fails the CRC-32 check"):
        load_checkpoint(path)


# -- incomplete checkpoints ------------------------------------------------------------------
def _drop(*keys: str) -> Callable[[dict[str, Any]], None]:
    def edit(state: dict[str, Any]) -> None:
        *parents, last = keys
        for key in parents:
            state = state[key]
        del state[last]

    return edit


def _set(key: str, value: Any, inner: str | None = None) -> Callable[[dict[str, Any]], None]:
    def edit(state: dict[str, Any]) -> None:
        (state[key] if inner else state)[inner or key] = value

    return edit


@pytest.mark.parametrize(
    "edit, fragment",
    [
        pytest.param(_drop("objective"), "key 'objective' is missing", id="no-objective"),
        pytest.param(_drop("rng"), "key 'rng' is missing", id="no-rng"),
        pytest.param(_drop("step"), "key 'step' is missing", id="no-step"),
        pytest.param(
            _drop("energy_evaluations"),
            "key 'energy_evaluations' is missing",
            id="no-energy-evaluations",
        ),
        pytest.param(_drop("wall_time_s"), "key 'wall_time_s' is missing", id="no-wall-time"),
        pytest.param(
            _drop("skipped_steps"), "key 'skipped_steps' is missing", id="no-skipped-steps"
        ),
        pytest.param(
            _drop("optimizer", "exp_avg_sq"),
            "key 'optimizer.exp_avg_sq' is missing",
            id="no-adam-second-moment",
        ),
        pytest.param(_drop("rng", "torch"), "key 'rng.torch' is missing", id="no-torch-rng"),
        pytest.param(
            _set("model", torch.zeros(3)),
            "key 'model' is a 1-D float32 tensor, not a dict of tensors",
            id="model-is-a-tensor",
        ),
        pytest.param(_set("step", "10"), "key 'step' is a str, not an int", id="step-is-text"),
        pytest.param(
            _set("rng", torch.zeros(5), "torch"),
            "key 'rng.torch' is a 1-D float32 tensor, not a 1-D uint8 tensor",
            id="rng-of-floats",
        ),
        pytest.param(
            _set("objective", [1, 2]), "key 'objective' is a list, not a dict", id="objective-list"
        ),
        pytest.param(
            _set("skipped_steps", torch.zeros(3, dtype=torch.int64)),
            "is incomplete or damaged",
            id="counter-of-wrong-shape",
        ),
        pytest.param(
            _set("model", {"nonsense": torch.zeros(2)}),
            "does not match this model/config",
            id="model-of-another-config",
        ),
    ],
)
def test_an_incomplete_checkpoint_is_refused_on_resume_with_one_line(
    run: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[dict[str, Any]], None],
    fragment: str,
) -> None:
    """Stamped, with a valid digest, but missing or mistyped entries."""
    config, run_dir = run
    path = _checkpoint(run_dir)
    state = load_checkpoint(path)
    edit(state)
    save_checkpoint(path, state)
    capsys.readouterr()
    assert main(_train(config, run_dir)) == 2
    _one_error_line(capsys.readouterr().err, str(path), fragment)


def _complete(kind: str) -> dict[str, Any]:
    """A minimal checkpoint of ``kind`` that passes its structure check."""
    rng = {"torch": torch.get_rng_state()}
    return {
        "stage-end": {"model": {"w": torch.zeros(2)}, "rng": rng},
        "buffer": {
            "stage": "anneal-1",
            "samples": torch.zeros(4, 2),
            "statistics": {"ess": 0.5},
            "rng": rng,
            "energy_evaluations": 4,
            "wall_time_s": 0.1,
        },
        "model": {"model": {"w": torch.zeros(2)}},
        "md": {
            "simulation": {
                **{k: torch.zeros(2, 1, 3) for k in ("positions", "velocities", "forces")},
                "reduced_energies": torch.zeros(2),
                "step": 10,
                "rng": torch.get_rng_state(),
                "accepted": torch.zeros(1),
                "attempted": torch.zeros(1),
            },
            "wall_time_s": 1.0,
        },
    }[kind]


@pytest.mark.parametrize("kind", ["stage-end", "buffer", "model", "md"])
def test_every_kind_of_checkpoint_names_its_missing_keys(tmp_path: Path, kind: str) -> None:
    state = _complete(kind)
    save_checkpoint(tmp_path / "c.pt", state)
    load_checkpoint(tmp_path / "c.pt", kind=kind)
    inner = state["simulation"] if kind == "md" else state
    for key in list(inner):
        broken = {k: v for k, v in inner.items() if k != key}
        save_checkpoint(tmp_path / "c.pt", {"simulation": broken} if kind == "md" else broken)
        name = f"simulation.{key}" if kind == "md" else key
        with pytest.raises(CorruptedCheckpoint, match=rf"key '{name}' is missing"):
            load_checkpoint(tmp_path / "c.pt", kind=kind)


def test_a_checkpoint_without_model_is_refused_by_sample(
    run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, run_dir = run
    state = load_checkpoint(_checkpoint(run_dir))
    del state["model"]
    save_checkpoint(_checkpoint(run_dir), state)
    capsys.readouterr()
    assert main(["sample", str(run_dir), "-n", "10", "-o", str(run_dir / "s.pt")]) == 2
    _one_error_line(capsys.readouterr().err, "incomplete", "key 'model' is missing")


# -- not a file, or no file ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["directory", "dev-zero-link", "broken-link"])
def test_something_else_at_the_checkpoint_path_is_refused(
    run: tuple[Path, Path], capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    config, run_dir = run
    path = _checkpoint(run_dir)
    path.unlink()
    if kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero" if kind == "dev-zero-link" else run_dir / "gone.pt")
    expected = {
        "directory": "is a directory",
        "dev-zero-link": "is a character device (a symbolic link to /dev/zero)",
        "broken-link": "is a broken symbolic link",
    }[kind]
    capsys.readouterr()
    assert main(_train(config, run_dir)) == 2
    _one_error_line(capsys.readouterr().err, str(path), expected)
    assert main(["sample", str(run_dir), "-n", "10", "-o", str(run_dir / "s.pt")]) == 2
    _one_error_line(capsys.readouterr().err, expected)
    assert os.path.lexists(path)  # left as found


def test_a_deleted_checkpoint_of_a_run_with_progress_is_announced(
    run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """metrics.csv records 20 steps, the checkpoint is gone: one warning line, then training
    starts over (and ends where the first run ended: same seed)."""
    config, run_dir = run
    path = _checkpoint(run_dir)
    first = load_checkpoint(path)
    path.unlink()
    capsys.readouterr()
    assert main(_train(config, run_dir)) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"boltzgen: warning: {path} does not exist, although {run_dir / 'metrics.csv'} records "
        "steps up to 20: training starts over from step 0 (its rows are dropped)"
    ]
    again = load_checkpoint(path)
    assert again["step"] == 20
    for name, tensor in first["model"].items():
        assert torch.equal(tensor, again["model"][name]), name


# -- stale temporary files -------------------------------------------------------------------
def test_only_stale_atomic_write_temporaries_are_removed(tmp_path: Path) -> None:
    stale = [".last.pt.k3j4h5g6.tmp", ".metrics.csv.abc_1234.tmp", ".a.b.c.00000000.tmp"]
    kept_files = [
        ".last.pt.tmp",  # no random part
        "last.pt.k3j4h5g6.tmp",  # no leading dot
        ".last.pt.K3J4H5G6.tmp",  # mkstemp draws lower case only
        ".last.pt.k3j4h5g.tmp",  # 7 characters
        ".last.pt.k3j4h5g6.tmp.bak",
        ".last.pt.k3j4h5g6.temp",
        "notes.tmp",
        "last.pt",
    ]
    for name in stale + kept_files:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".folder.abcdefgh.tmp").mkdir()  # a directory with a matching name
    outside = tmp_path.parent / f"{tmp_path.name}-outside.pt"
    outside.write_bytes(b"keep me")
    (tmp_path / ".link.abcdefgh.tmp").symlink_to(outside)  # a link with a matching name
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([*kept_files, ".folder.abcdefgh.tmp", ".link.abcdefgh.tmp"])
    assert outside.read_bytes() == b"keep me"
    assert remove_stale_temporaries(tmp_path / "missing") == []


_WRITER = """
import sys, time
from boltzgen.io.files import atomic_write
with atomic_write(sys.argv[1]) as handle:
    handle.write(b"x" * 100_000)
    handle.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_writer_killed_mid_write_leaves_a_temporary_that_the_next_start_removes(
    tmp_path: Path,
) -> None:
    """A real process inside atomic_write: its temporary file is kept while it lives (it holds
    the lock), and removed once SIGKILL has ended it; the target was never created."""
    target = tmp_path / "checkpoints" / "last.pt"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        (temporary,) = target.parent.glob(".last.pt.*.tmp")
        assert remove_stale_temporaries(target.parent) == []  # a live writer's file
        assert temporary.exists()
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    assert temporary.exists() and not target.exists()  # the orphan of the issue
    assert remove_stale_temporaries(target.parent) == [temporary]
    assert list(target.parent.iterdir()) == []


def test_a_resumed_training_run_removes_the_orphans_of_its_folders(
    run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, run_dir = run
    orphans = [
        run_dir / "checkpoints" / ".last.pt.k3j4h5g6.tmp",
        run_dir / ".metrics.csv.abcdefgh.tmp",
        run_dir / "samples" / ".samples.pt.zz99zz99.tmp",
    ]
    others = [run_dir / "checkpoints" / ".last.pt.tmp", run_dir / "checkpoints" / "keep.tmp"]
    for path in orphans + others:
        path.write_bytes(b"\0" * 1000)
    assert main(_train(config, run_dir)) == 0
    assert not any(path.exists() for path in orphans)
    assert all(path.exists() for path in others)


# -- MD recordings ---------------------------------------------------------------------------
class _Well(Energy):
    """One particle in a 3-D harmonic well, k_B = 1."""

    def __init__(self) -> None:
        super().__init__((1, 3), 1.0)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x * x).sum((-1, -2))


def _md(directory: Path) -> tuple[MDRun, ReplicaExchangeMD]:
    simulation = ReplicaExchangeMD(
        _Well(), torch.ones(1), [1.0, 2.0], 4, timestep=0.01, seed=3, boltzmann_constant=1.0
    )
    return MDRun(directory, {"test": "md"}), simulation


def test_md_recording_refuses_damaged_or_lost_checkpoints_and_removes_orphans(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "md"
    recording, simulation = _md(directory)
    assert recording.resume_or_start(simulation, np.zeros((1, 3))) is False
    recording.run(simulation, 40, report_every=10, checkpoint_every=10, progress=False)
    path = recording.checkpoint_path
    intact = tmp_path / "intact.pt"
    shutil.copy(path, intact)

    def chunks() -> int:
        return len(list((directory / "chunks").glob("frames-*.npz")))

    orphans = [directory / ".checkpoint.pt.abcdefgh.tmp", directory / "chunks" / ".f.12345678.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"x")
    _flip_byte_of(path, load_checkpoint(path)["simulation"]["positions"])
    recording, simulation = _md(directory)
    with pytest.raises(CorruptedCheckpoint, match="corrupted") as info:
        recording.resume_or_start(simulation, np.zeros((1, 3)))
    assert "\n" not in str(info.value)
    assert not any(orphan.exists() for orphan in orphans) and chunks() == 4

    state = load_checkpoint(intact)
    del state["simulation"]["rng"]
    save_checkpoint(path, state)
    with pytest.raises(CorruptedCheckpoint, match="key 'simulation.rng' is missing"):
        recording.resume_or_start(simulation, np.zeros((1, 3)))

    path.unlink()  # a lost checkpoint with 4 chunks: refused, nothing deleted
    with pytest.raises(BoltzgenError, match="holds 4 chunks up to step 40"):
        recording.resume_or_start(simulation, np.zeros((1, 3)))
    assert chunks() == 4
    path.symlink_to("/dev/zero")
    with pytest.raises(CorruptedCheckpoint, match="character device"):
        recording.resume_or_start(simulation, np.zeros((1, 3)))
    assert chunks() == 4
    path.unlink()
    shutil.copy(intact, path)
    assert recording.resume_or_start(simulation, np.zeros((1, 3))) is True
    assert simulation.step == 40
