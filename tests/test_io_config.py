"""Checkpoints load safely, configs fail with one clear line, the CLI never shows a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from boltzgen import BoltzgenError
from boltzgen.cli.main import main
from boltzgen.io import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    load_samples,
    save_checkpoint,
    save_samples,
)
from boltzgen.workflow.config import apply_overrides, load_config
from boltzgen.workflow.registry import resolve_config

MINIMAL = """
[target]
name = "gaussian-mixture"
[model]
name = "coupling-flow"
[trainer]
name = "reverse-kl"
"""


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    state = {"step": 3, "model": {"w": torch.randn(4, 4)}, "note": "x"}
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["format"] == CHECKPOINT_FORMAT and loaded["step"] == 3
    torch.testing.assert_close(loaded["model"]["w"], state["model"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary files left


class _Evil:
    def __reduce__(self):  # would run code if unpickled
        return (print, ("owned",))


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"\x00garbage" * 50, "corrupted"),
        (None, "pickled object"),
        (None, "truncated"),
        (None, "foreign torch file"),
    ],
)
def test_corrupted_or_foreign_checkpoint_is_refused(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "bad.pt"
    if reason == "corrupted":
        path.write_bytes(content)
    elif reason == "pickled object":
        torch.save({"format": CHECKPOINT_FORMAT, "evil": _Evil()}, path)
    elif reason == "truncated":
        save_checkpoint(path, {"model": {"w": torch.randn(100, 100)}})
        path.write_bytes(path.read_bytes()[:2000])
    else:
        torch.save({"weights": torch.randn(3)}, path)
    with pytest.raises(BoltzgenError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and "checkpoint" in message


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(BoltzgenError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")


@pytest.mark.parametrize("suffix", [".pt", ".npz", ".npy"])
def test_samples_round_trip(tmp_path: Path, suffix: str) -> None:
    x = torch.randn(10, 3, dtype=torch.float64)
    save_samples(tmp_path / f"s{suffix}", x, log_q=torch.zeros(10))
    torch.testing.assert_close(load_samples(tmp_path / f"s{suffix}"), x)


def test_overrides_parse_toml_values() -> None:
    config = apply_overrides(
        {"trainer": {"name": "reverse-kl"}},
        ["trainer.steps=5", "trainer.lr=1e-4", "model.mask=random", "seed=3"],
    )
    assert config["trainer"]["steps"] == 5 and config["trainer"]["lr"] == 1e-4
    assert config["model"]["mask"] == "random" and config["seed"] == 3


def test_resolve_fills_defaults() -> None:
    config = load_config_text(MINIMAL)
    resolved = resolve_config(config)
    assert resolved["trainer"]["steps"] == 1000 and resolved["model"]["n_layers"] == 8
    assert resolved["target"]["radius"] == 3.0 and resolved["sample"]["n"] == 10000


def load_config_text(text: str) -> dict:
    from boltzgen.workflow.config import parse_config_text

    return parse_config_text(text)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["trainer.stepz=5"], "unknown key(s) for 'reverse-kl': stepz"),
        (["trainer.steps='many'"], "expected an int"),
        (["trainer.steps=0"], "steps = 0 is out of range"),
        (["target.name=nope"], "name = 'nope' is unknown"),
        (["model.hidden=1.5"], "expected an int"),
    ],
)
def test_bad_config_values_give_one_line(overrides: list[str], fragment: str) -> None:
    with pytest.raises(BoltzgenError) as info:
        resolve_config(apply_overrides(load_config_text(MINIMAL), overrides))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_cli_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.toml").write_text("[target\nname=1")
    cases = [
        ["train", str(tmp_path / "missing.toml")],
        ["train", str(tmp_path / "bad.toml")],
        ["sample", str(tmp_path), "-o", str(tmp_path / "x.pt")],
        ["init", "no-such-template"],
        ["no-such-command"],
    ]
    for argv in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("boltzgen: error: ") and err.count("\n") == 1, (argv, err)


def test_console_script_version_and_exit_code(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "boltzgen", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("boltzgen ")
    result = subprocess.run(
        [sys.executable, "-m", "boltzgen", "train", str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
    )
    assert (
        result.returncode == 2
        and "Traceback" not in result.stderr
        and "does not exist" in result.stderr
    )


def test_init_writes_templates_that_resolve(tmp_path: Path) -> None:
    from boltzgen.workflow.templates import template_names

    for name in template_names():
        out = tmp_path / f"{name}.toml"
        assert main(["init", name, "-o", str(out)]) == 0
        resolve_config(load_config(out))


def test_bad_target_value_leaves_no_run_directory(tmp_path: Path) -> None:
    """A value that only the target's constructor can judge fails before anything is written."""
    from boltzgen.workflow.config import parse_config_text
    from boltzgen.workflow.runs import train_run

    config = apply_overrides(parse_config_text(MINIMAL), ["target.sigma=-1.0"])
    with pytest.raises(BoltzgenError, match=r"sigma = -1.0 is out of range: allowed a number > 0"):
        train_run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
