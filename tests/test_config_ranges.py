"""Every numeric config key has a range, checked before anything is written; run folders are
locked; SIGTERM and Ctrl-C checkpoint and exit 143 / 130; a full disk is one line."""

from __future__ import annotations

import argparse
import errno
import math
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from boltzgen.cli.main import main
from boltzgen.errors import BoltzgenError
from boltzgen.io import load_checkpoint
from boltzgen.io.rundir import RunDir
from boltzgen.workflow.ranges import key_range
from boltzgen.workflow.registry import _REGISTRIES, PROTOCOLS, resolve_config, schema
from boltzgen.workflow.templates import template_with

#: Per factory, a valid value for each key that has no default.
REQUIRED = {"tabg": {"t_high": 1000.0}, "distill": {"teacher": "runs/teacher"}}
BASE = {
    "target": {"name": "gaussian-mixture"},
    "model": {"name": "coupling-flow"},
    "trainer": {"name": "reverse-kl"},
}


def _numeric_keys() -> list[tuple[str, str, str, str, object]]:
    """(section, factory, key, kind, default) of every int and float config key."""
    found = []
    tables = [(s, n, schema(s, n)) for s, registry in _REGISTRIES.items() for n in registry]
    tables += [("trainer", name, cls.config_keys()) for name, cls in PROTOCOLS.items()]
    if not any(name == "reverse-kl" for _, name, _ in tables):
        raise AssertionError("the registry lost its objectives")
    from boltzgen.workflow.registry import _SETTINGS_SCHEMA

    for section, name, keys in tables:
        if section == "trainer" and name not in PROTOCOLS:
            keys = {**_SETTINGS_SCHEMA, **keys}
        for key, (default, annotation) in keys.items():
            kind = annotation.split("|")[0].strip()
            if kind in ("int", "float"):
                found.append((section, name, key, kind, default))
    return found


NUMERIC = _numeric_keys()


def test_every_numeric_key_has_a_range_that_holds_its_default() -> None:
    assert len(NUMERIC) > 80
    missing = [f"[{s}] {n}.{k}" for s, n, k, _, _ in NUMERIC if key_range(s, n, k) is None]
    assert not missing, f"keys without a range: {missing}"
    for section, name, key, _, default in NUMERIC:
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            assert key_range(section, name, key).contains(default), (section, name, key)


def _bad_values(kind: str, section: str, name: str, key: str) -> list[object]:
    """Wrong types, NaN, and values just past each finite bound (or infinite past it)."""
    range_ = key_range(section, name, key)
    values: list[object] = [math.nan, True, "1", [1]]
    if kind == "int":
        values.append(1.5)
    if range_.high != math.inf:
        values.append(range_.high + 1 if kind == "int" else math.inf)
        values.append(int(range_.high) * 10 + 1 if kind == "int" else 1e300)
    if range_.low != -math.inf:
        values.append(range_.low if range_.low_open else range_.low - 1)
        values.append(-(2**63) if kind == "int" else -math.inf)
    return values


@pytest.mark.parametrize(("section", "name", "key", "kind", "default"), NUMERIC)
def test_bad_values_of_every_numeric_key_are_refused_naming_the_key(
    section: str, name: str, key: str, kind: str, default: object
) -> None:
    """NaN, inf, out-of-range, wrong-typed values: one BoltzgenError line naming the key."""
    for value in _bad_values(kind, section, name, key):
        config = {s: dict(t) for s, t in BASE.items()}
        required = REQUIRED.get(name, {})
        config[section] = {"name": name, **{k: v for k, v in required.items() if k != key}}
        config[section][key] = value
        with pytest.raises(BoltzgenError) as raised:
            resolve_config(config)
        message = str(raised.value)
        assert key in message and "\n" not in message, (key, value, message)


def _train(tmp_path: Path, capsys, *args: str, steps: int = 10) -> tuple[int, str]:
    config = tmp_path / "toy.toml"
    config.write_text(template_with("toy-smoke", [f"trainer.steps={steps}"]))
    code = main(["train", str(config), "--no-progress", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "override",
    [
        "trainer.temperature=0",
        "trainer.lr=inf",
        "trainer.steps=1000000000000",
        "trainer.batch_size=9223372036854775807",
        "target.sigma=nan",
        "target.name=[1, 2]",
        "model.name={a = 1}",
        "seed=true",
        "sample.n=100000000000",
    ],
)
def test_a_refused_value_leaves_no_run_folder_and_the_fixed_config_runs(
    tmp_path: Path, capsys, override: str
) -> None:
    run = tmp_path / "run"
    code, err = _train(tmp_path, capsys, "-o", str(run), "--set", override)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not run.exists()


def test_a_fixed_value_runs_in_the_same_folder(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code, _ = _train(tmp_path, capsys, "-o", str(run), "--set", "trainer.lr=inf")
    assert code == 2 and not run.exists()
    code, err = _train(tmp_path, capsys, "-o", str(run), "--set", "trainer.lr=0.01")
    assert code == 0, err
    assert (run / "checkpoints" / "last.pt").is_file()


def test_configs_that_are_not_text_or_nest_too_deeply_are_one_line(tmp_path: Path, capsys) -> None:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"[target]\nname = '\xff\xfe'\n")
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    for path, expected in [(binary, "not UTF-8"), (deep, "nested too deeply"), (tmp_path, "")]:
        assert main(["train", str(path), "-o", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_output_folder_that_is_a_file_or_under_a_file(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("keep me\n")
    for output, expected in [(blocker, "is a file"), (blocker / "run", "under a file")]:
        code, err = _train(tmp_path, capsys, "-o", str(output))
        assert code == 2 and expected in err and err.count("\n") == 1, err
    assert blocker.read_text() == "keep me\n"


def test_a_second_process_on_a_locked_run_folder_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from boltzgen.io.rundir import RunDir\n"
            f"with RunDir({str(run)!r}).lock():\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = _train(tmp_path, capsys, "-o", str(run))
        assert code == 2 and f"in use by another boltzgen process (pid {holder.pid})" in err
        assert not (run / "config.toml").exists()
    finally:
        holder.kill()
        holder.wait()
    with RunDir(run).lock():  # the kernel released the killed holder's lock
        pass


def _default_interrupts() -> None:
    """Ctrl-C as in a terminal: a background job of a non-interactive shell (as CI runs this)
    inherits SIGINT ignored, and Python keeps it so."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_training(tmp_path: Path, steps: int, **popen) -> tuple[subprocess.Popen, Path]:
    config = tmp_path / "toy.toml"
    config.write_text(template_with("toy-smoke", [f"trainer.steps={steps}"]))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "boltzgen", "train", str(config), "-o", str(run)]
    popen.setdefault("preexec_fn", _default_interrupts)
    process = subprocess.Popen(
        [*command, "--no-progress"], stderr=subprocess.PIPE, text=True, env=env, **popen
    )
    return process, run


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.is_file():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_checkpoint_and_exit_with_their_own_code(
    tmp_path: Path, signum: int, code: int
) -> None:
    process, run = _start_training(tmp_path, steps=100_000)
    checkpoint = run / "checkpoints" / "last.pt"
    _wait_for(checkpoint, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "Traceback" not in err and "interrupted at step" in err and err.count("\n") == 1
    assert load_checkpoint(checkpoint)["step"] >= 5


def test_ctrl_c_while_starting_up_is_one_line(tmp_path: Path) -> None:
    for delay in (0.4, 0.6, 1.2):  # after the interpreter has started (it runs no boltzgen code)
        process, _ = _start_training(tmp_path, steps=100_000)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130 and "Traceback" not in err, err


class _SignalsItselfWhenFreed:
    """Sends this process ``signum`` from ``__del__``, as a launcher stopping the ranks of a
    failed run does while the failed work (its progress bar) is freed."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        os.kill(os.getpid(), self.signum)
        time.sleep(0.05)  # the handler runs here, inside __del__


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_a_failure_is_reported_is_not_a_second_error(
    signum: int, monkeypatch, capsys
) -> None:
    def fail(args) -> int:
        in_flight = _SignalsItselfWhenFreed(signum)  # freed with this frame, after the raise
        raise BoltzgenError(f"the run stopped ({in_flight.signum})")

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    parser = argparse.ArgumentParser()
    parser.set_defaults(run=fail)
    monkeypatch.setattr(sys.modules[main.__module__], "build_parser", lambda: parser)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err == f"boltzgen: error: the run stopped ({signum})\n" and not unraisable


def _limit_file_size(limit: int):
    def apply() -> None:
        _default_interrupts()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _stopped_after_first_checkpoint(folder: Path) -> tuple[Path, bytes]:
    """Start the toy run in ``folder``, stop it (SIGTERM) once its first checkpoint exists;
    the checkpoint's path and bytes."""
    process, run = _start_training(folder, steps=100_000)
    checkpoint = run / "checkpoints" / "last.pt"
    _wait_for(checkpoint, process)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    return checkpoint, checkpoint.read_bytes()


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    """The file-size limit (RLIMIT_FSIZE) makes writes fail like a full disk: EFBIG instead of
    ENOSPC, the same path through the atomic writer. A run is stopped after its first
    checkpoint, then resumed under a 4 kB limit that the next checkpoint cannot fit in."""
    checkpoint, before = _stopped_after_first_checkpoint(tmp_path)
    process, run = _start_training(tmp_path, steps=100_000, preexec_fn=_limit_file_size(4096))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and "File too large" in err and "previous version is kept" in err
    assert checkpoint.read_bytes() == before
    assert not list(checkpoint.parent.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["energy", "check", "alanine-dipeptide", "--md-frames", "-3"], "--md-frames: -3 is out"),
        (["energy", "check", "alanine-dipeptide", "--perturbation", "nan"], "--perturbation: nan"),
        (["energy", "check", "ala3", "--energy-tolerance", "-1"], "--energy-tolerance: -1 is out"),
        (["sample", "runs/x", "-n", "100000000000"], "-n: 100000000000 is out of range"),
        (["sample", "runs/x", "-n", "1e11"], "-n: '1e11' is not an integer"),
        (["md", "alanine-dipeptide", "-o", "x", "--steps", "10", "--dt", "inf"], "--dt: inf"),
    ],
)
def test_command_line_numbers_out_of_range_are_one_line(argv, expected, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 16 MB tmpfs mounted at ``tmp_path / "disk"`` (root only; skipped with the reason
    otherwise), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip(
            "not root: mounting a tmpfs needs root (test_a_full_disk_is_one_line_and_keeps_the_"
            "last_checkpoint checks the same write path with RLIMIT_FSIZE, without root)"
        )
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"the kernel refused to mount a tmpfs ({mounted.stderr.strip()[:120]}; e.g. a "
            "container without CAP_SYS_ADMIN): test_a_full_disk_is_one_line_and_keeps_the_"
            "last_checkpoint checks the same write path with RLIMIT_FSIZE"
        )
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Write zeros into ``disk/filler`` until the file system is full; the filler's path."""
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    return filler


def test_a_really_full_disk_is_one_line_keeps_the_checkpoint_and_resumes(
    small_disk: Path,
) -> None:
    """A run on a 16 MB tmpfs is stopped after its first checkpoint; the disk is then filled to
    the last byte. The resumed run's next checkpoint fails with ENOSPC: one line, exit 2, the
    previous checkpoint byte for byte intact, no temporary left. With space freed, the same
    command resumes from that checkpoint and writes the next one."""
    checkpoint, before = _stopped_after_first_checkpoint(small_disk)
    step = load_checkpoint(checkpoint)["step"]
    filler = _fill(small_disk)
    process, run = _start_training(small_disk, steps=100_000)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and "No space left on device" in err, err
    assert "previous version is kept" in err and "free some space" in err, err
    assert checkpoint.read_bytes() == before
    assert not list(checkpoint.parent.glob(".*.tmp"))
    filler.unlink()
    process, run = _start_training(small_disk, steps=100_000)  # the same command: resumes
    deadline = time.monotonic() + 120
    while checkpoint.read_bytes() == before:
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert load_checkpoint(checkpoint)["step"] > step
