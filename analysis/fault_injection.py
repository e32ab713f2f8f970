"""Fault injection: fuzzed configs, SIGKILL and resume, concurrent writers, signals, full disk.

Drives ``boltzgen train`` the way issue reports did and prints one table of counts: cases,
tracebacks, wrong exit codes, hangs, partial files left, bit-identical resumes.

    python analysis/fault_injection.py [--kills 20] [--seed 0] [--json]

Config cases run in this process through :func:`boltzgen.cli.main.main` (a case that raises
past ``main`` is a traceback; ``SIGALRM`` after 60 s is a hang); the process cases run
``python -m boltzgen`` subprocesses on a tiny toy config (one torch thread each).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from boltzgen.cli.main import main
from boltzgen.io import load_checkpoint
from boltzgen.workflow.ranges import key_range
from boltzgen.workflow.registry import _REGISTRIES, _SETTINGS_SCHEMA, PROTOCOLS, schema
from boltzgen.workflow.templates import template_with

HANG_S = 60


def _toy(steps: int) -> str:
    """The seconds-long smoke template with ``steps`` training steps."""
    return template_with("toy-smoke", [f"trainer.steps={steps}"])


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang


def _config_cases() -> list[tuple[str, str | bytes | None]]:
    """(label, config text / bytes; ``None``: the path is a directory) of every fuzzed config."""
    base = {
        "target": 'name = "gaussian-mixture"',
        "model": 'name = "coupling-flow"\nn_layers = 2\nhidden = 16',
        "trainer": 'name = "reverse-kl"\nsteps = 3\nbatch_size = 16\nprogress = false',
    }

    def text(section: str, body: str) -> str:
        tables = {**base, section: body}
        return "".join(f"[{s}]\n{t}\n" for s, t in tables.items()) + "[sample]\nn = 10\n"

    cases: list[tuple[str, str | bytes | None]] = []
    tables = [(s, n, schema(s, n)) for s, r in _REGISTRIES.items() for n in r]
    tables += [("trainer", n, cls.config_keys()) for n, cls in PROTOCOLS.items()]
    for section, name, keys in tables:
        if section == "trainer" and name not in PROTOCOLS:
            keys = {**_SETTINGS_SCHEMA, **keys}
        head = f'name = "{name}"' + ("\nt_high = 1000.0" if name == "tabg" else "")
        for key, (_, annotation) in keys.items():
            head_key = f'name = "{name}"' if key == "t_high" else head
            kind = annotation.split("|")[0].strip()
            values = ['"text"', "[1, 2]", "{a = 1}", "true"]
            if kind in ("int", "float"):
                range_ = key_range(section, name, key)
                values = ["nan", "inf", "-inf", "1e300", "-1e300", "true", '"1"', "[1]"]
                values += ["0", "-1", "1000000000000", "9223372036854775807"]
                values = [
                    v
                    for v in values
                    if not _inside(v, range_, kind)  # only values the range refuses
                ]
            elif kind == "bool":
                values = ['"yes"', "1", "[true]"]
            elif kind == "str":
                values = ["5", "[]", "{a = 1}", "true"]
            for value in values:
                label = f"[{section}] {name}.{key} = {value}"
                cases.append((label, text(section, f"{head_key}\n{key} = {value}")))
        cases.append((f"[{section}] {name}: unknown key", text(section, f"{head}\nnot_a_key = 1")))
    for section in ("target", "model", "trainer"):
        cases.append((f"[{section}] missing", text(section, "").replace(f"[{section}]\n\n", "")))
        cases.append((f"[{section}] name = [1]", text(section, "name = [1]")))
        cases.append((f"[{section}] name = {{}}", text(section, "name = {a = 1}")))
        cases.append((f"[{section}] duplicate key", text(section, base[section] + "\nname = 'x'")))
    cases += [
        ("empty file", ""),
        ("not UTF-8", b"[target]\nname = '\xff\xfe'\n"),
        ("binary", bytes(range(256))),
        ("deeply nested", "x = " + "[" * 3000 + "]" * 3000),
        ("directory", None),
        ("seed = true", "seed = true\n" + text("target", base["target"])),
        ("seed = -1", "seed = -1\n" + text("target", base["target"])),
        ("dtype = 1", "dtype = 1\n" + text("target", base["target"])),
    ]
    return cases


def _inside(value: str, range_, kind: str) -> bool:
    try:
        number = json.loads(value.replace("nan", "NaN").replace("inf", "Infinity"))
    except json.JSONDecodeError:
        return False
    if isinstance(number, float) and kind == "int":
        return False
    return range_.contains(number)


def run_config_cases(workdir: Path) -> dict[str, int]:
    counts = Counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    for index, (label, content) in enumerate(_config_cases()):
        case = workdir / f"case{index}"
        case.mkdir()
        config = case / "config.toml"
        if content is None:
            config.mkdir()
        elif isinstance(content, bytes):
            config.write_bytes(content)
        else:
            config.write_text(content)
        run = case / "run"
        stderr = io.StringIO()
        counts["cases"] += 1
        signal.alarm(HANG_S)
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                code = main(["train", str(config), "-o", str(run), "--no-progress"])
        except _Hang:
            counts["hangs"] += 1
            print(f"hang: {label}", file=sys.stderr)
            continue
        except BaseException as error:  # what would be a traceback on a terminal
            counts["tracebacks"] += 1
            print(f"traceback: {label}: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        finally:
            signal.alarm(0)
        lines = stderr.getvalue().strip().splitlines()
        if code != 2:
            counts["wrong exit codes"] += 1
            print(f"exit {code}: {label}", file=sys.stderr)
        if len(lines) != 1:
            counts["not one line"] += 1
            print(f"{len(lines)} lines: {label}: {lines[:3]}", file=sys.stderr)
        if run.exists():
            counts["partial files"] += 1
            print(f"left {sorted(p.name for p in run.iterdir())}: {label}", file=sys.stderr)
    signal.signal(signal.SIGALRM, previous)
    return dict(counts)


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _train(config: Path, run: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    popen.setdefault("preexec_fn", _default_signals)
    return subprocess.Popen(
        [sys.executable, "-m", "boltzgen", "train", str(config), "-o", str(run), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )


def _wait_for_checkpoint(
    process: subprocess.Popen, checkpoint: Path, seconds: float = 120
) -> bool:
    """Wait until ``checkpoint`` exists; ``False`` (and the process's stderr printed) when the
    process ended or the time ran out first."""
    deadline = time.monotonic() + seconds
    while not checkpoint.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            print(
                f"no checkpoint {checkpoint} (exit {process.returncode}): {err}", file=sys.stderr
            )
            return False
        time.sleep(0.05)
    return True


def _model_tensors(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def _md_frames(run: Path) -> dict[str, torch.Tensor]:
    """Every recorded MD frame (positions, energies, temperatures) of a ``boltzgen md`` folder,
    and its energies table as bytes."""
    import numpy as np

    arrays: dict[str, torch.Tensor] = {}
    for chunk in sorted((run / "chunks").glob("frames-*.npz")):
        with np.load(chunk) as frames:
            arrays.update({f"{chunk.stem}.{k}": torch.from_numpy(frames[k]) for k in frames})
    energies = (run / "energies.csv").read_bytes()
    arrays["energies.csv"] = torch.frombuffer(bytearray(energies), dtype=torch.uint8)
    return arrays


#: A TA-BG run on the toy with a checkpoint every 10 steps of both stages: kills land in the
#: pretraining, in buffer draws and writes, across rung boundaries and in the final sampling.
_TABG_TOY = """
seed = 0
[target]
name = "gaussian-mixture"
[model]
name = "coupling-flow"
n_layers = 2
hidden = 16
[trainer]
name = "tabg"
t_high = 4.0
n_rungs = 2
extra_final_rungs = 1
drop_top_k = 0
pretrain_steps = 150
pretrain_batch_size = 32
buffer_samples = 4096
resample_size = 1024
chunk_size = 512
rung_steps = 40
rung_batch_size = 64
checkpoint_every = 10
log_every = 10
progress = false
[sample]
n = 200
"""


@dataclasses.dataclass
class KillCase:
    """A command to kill and rerun: its argument list after ``python -m boltzgen`` (given the
    output folder) and what must come out of it bit for bit."""

    arguments: Callable[[Path], list[str]]
    result: Callable[[Path], dict[str, torch.Tensor]]


def kill_cases(workdir: Path) -> dict[str, KillCase]:
    """Reverse KL on the toy, a discrete objective (score-function reverse KL on an RBM),
    TA-BG across its rung boundaries, and replica-exchange MD; config files go to ``workdir``."""
    configs = {
        "reverse-kl": template_with(
            "toy-smoke", ["trainer.steps=400", "trainer.checkpoint_every=10"]
        ),
        "discrete": template_with(
            "discrete-reverse-kl-score",
            ["trainer.steps=300", "trainer.checkpoint_every=10", "trainer.log_every=10"],
        ),
        "tabg": _TABG_TOY,
    }
    cases = {}
    for label, text in configs.items():
        config = workdir / f"{label}.toml"
        config.write_text(text)
        cases[label] = KillCase(
            lambda run, config=config: ["train", str(config), "-o", str(run), "--no-progress"],
            _model_tensors,
        )
    md = ["md", "alanine-dipeptide-vacuum", "--steps", "1500", "--replicas", "4", "--rungs", "2"]
    md += ["--t-max", "400", "--checkpoint-every", "100", "--report-every", "50", "--no-progress"]
    cases["md"] = KillCase(lambda run: [*md, "-o", str(run)], _md_frames)
    return cases


def _boltzgen(arguments: list[str]) -> subprocess.Popen:
    """``python -m boltzgen ARGS`` with one torch thread and the default SIGINT action."""
    return subprocess.Popen(
        [sys.executable, "-m", "boltzgen", *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=_default_signals,
    )


def run_kill_cases(
    workdir: Path, kills: int, rng: random.Random, only: list[str] | None = None
) -> dict[str, int]:
    """SIGKILL each run at random moments, rerun until it finishes, compare the final result
    (parameters; MD frames) with an uninterrupted run's bit for bit (``kills`` sequences per
    case; ``only``: these cases)."""
    counts = Counter()
    for label, case in kill_cases(workdir).items():
        if only and label not in only:
            continue
        reference = workdir / f"{label}-reference"
        started = time.monotonic()
        _, err = _boltzgen(case.arguments(reference)).communicate()
        duration = time.monotonic() - started
        expected = case.result(reference)
        for k in range(kills):
            run = workdir / f"{label}-kill{k}"
            for _attempt in range(20):
                process = _boltzgen(case.arguments(run))
                try:
                    process.wait(timeout=rng.uniform(0.5, duration))
                except subprocess.TimeoutExpired:
                    process.kill()
                    counts[f"{label}: kills injected"] += 1
                _, err = process.communicate()
                counts["temp files after a kill"] += len(list(run.glob("**/.*.tmp")))
                if process.returncode == 0:
                    break
                if process.returncode != -signal.SIGKILL:
                    counts[f"{label}: failed reruns"] += 1
                    print(f"{label} {k}: exit {process.returncode}: {err.strip()[:200]}")
                    break
            if process.returncode != 0:
                continue
            got = case.result(run)
            counts[f"{label}: bit-identical final runs"] += got.keys() == expected.keys() and all(
                torch.equal(got[n], expected[n]) for n in expected
            )
            counts[f"{label}: sequences"] += 1
    return dict(counts)


def run_concurrent_cases(workdir: Path, trials: int = 5) -> dict[str, int]:
    """Two trainings started together on one folder: one must be refused in one line."""
    counts = Counter()
    config = workdir / "toy.toml"
    config.write_text(_toy(steps=200))
    for k in range(trials):
        run = workdir / f"concurrent{k}"
        first, second = _train(config, run), _train(config, run)
        results = [(p.communicate()[1], p.returncode) for p in (first, second)]
        codes = sorted(code for _, code in results)
        counts["trials"] += 1
        refused = [err for err, code in results if code == 2 and "in use by another" in err]
        ok = codes == [0, 2] and len(refused) == 1
        if not ok:
            # a second process that starts after the first finished resumes it: also correct
            ok = codes == [0, 0]
        counts["correct outcomes"] += ok
        steps = [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]]
        counts["duplicate metrics rows"] += len(steps) - len(set(steps))
    return dict(counts)


def run_signal_cases(workdir: Path, trials: int = 3) -> dict[str, int]:
    counts = Counter()
    config = workdir / "toy.toml"
    config.write_text(_toy(steps=100_000))
    for signum, code in [(signal.SIGTERM, 143), (signal.SIGINT, 130)]:
        for k in range(trials):
            run = workdir / f"signal{signum}-{k}"
            process = _train(config, run)
            counts["signals"] += 1
            if not _wait_for_checkpoint(process, run / "checkpoints" / "last.pt"):
                counts["failed starts"] += 1
                continue
            process.send_signal(signum)
            _, err = process.communicate()
            counts["right exit code"] += process.returncode == code
            counts["tracebacks"] += "Traceback" in err
            if process.returncode != code or "Traceback" in err:
                print(f"signal {signum}: exit {process.returncode}: {err[-300:]}", file=sys.stderr)
    for delay in (0.05, 0.2, 0.5, 1.0, 2.0):
        process = _train(config, workdir / f"startup{delay}")
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate()
        counts["Ctrl-C at start-up"] += 1
        counts["tracebacks"] += "Traceback" in err
        counts["right exit code"] += process.returncode == 130
        if process.returncode != 130 or "Traceback" in err:
            print(
                f"Ctrl-C after {delay} s: exit {process.returncode}: {err[-300:]}", file=sys.stderr
            )
    return dict(counts)


def run_disk_full_cases(workdir: Path) -> dict[str, int]:
    """Resume under a file-size limit (EFBIG, as a full disk gives ENOSPC)."""
    counts = Counter()
    config = workdir / "toy.toml"
    config.write_text(_toy(steps=100_000))
    for limit in (1024, 4096, 16384, 32768):
        run = workdir / f"full{limit}"
        process = _train(config, run)
        checkpoint = run / "checkpoints" / "last.pt"
        counts["cases"] += 1
        if not _wait_for_checkpoint(process, checkpoint):
            counts["failed starts"] += 1
            continue
        process.send_signal(signal.SIGTERM)
        process.communicate()
        before = checkpoint.read_bytes()

        def limited(limit: int = limit) -> None:
            _default_signals()
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        process = _train(config, run, preexec_fn=limited)
        _, err = process.communicate()
        counts["tracebacks"] += "Traceback" in err
        counts["one line, exit 2"] += process.returncode == 2 and err.count("\n") == 1
        counts["checkpoint kept"] += checkpoint.read_bytes() == before
        counts["temp files left"] += len(list(run.glob("**/.*.tmp")))
    return dict(counts)


def main_(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILL sequences (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--only-kills",
        nargs="*",
        metavar="CASE",
        help="run only the SIGKILL cases (these of reverse-kl, discrete, tabg, md; none: all)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    results = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = [
            ("configs", lambda d: run_config_cases(d)),
            ("SIGKILL + resume", lambda d: run_kill_cases(d, args.kills, rng, args.only_kills)),
            ("concurrent writers", lambda d: run_concurrent_cases(d)),
            ("signals", lambda d: run_signal_cases(d)),
            ("file-size limit", lambda d: run_disk_full_cases(d)),
        ]
        if args.only_kills is not None:
            cases = cases[1:2]
        for name, run in cases:
            folder = root / name.split()[0]
            folder.mkdir()
            t0 = time.perf_counter()
            results[name] = {**run(folder), "seconds": round(time.perf_counter() - t0, 1)}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, counts in results.items():
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main_()
