"""Every command of the tutorials (docs/tutorials/*.md, docs/getting-started.md) runs as written,
in order, in a fresh folder, and gives what the page says; the API reference covers the
public API.

The ```bash and ```python blocks of a page run one after the other in ``tmp_path``. Step and
sample counts are shrunk by the exact text substitutions of ``SHRINK`` (each must occur in the
page, so an edit of a page cannot silently make its test run at full size): the tutorials state
the sizes a user runs, the test runs the same commands smaller.

A ``boltzgen ...`` command (with optional ``VAR=value`` prefixes and one trailing ``> FILE``)
runs in this process through ``boltzgen.cli.main.main`` with the argv bash would pass (POSIX
``shlex``), so torch and OpenMM are imported once and the four pages fit in about 90 s on two
cores; every other command (heredocs, pipes, anything else) runs in ``bash -e`` with a
``boltzgen`` on ``PATH`` that is this checkout.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import mdtraj
import numpy as np
import pytest
import torch
from html_images import decode_image, image_sources
from markdown_examples import code_blocks, run_python

import boltzgen
from boltzgen.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = {path.name: path for path in sorted((DOCS / "tutorials").glob("*.md"))}
PAGES["getting-started.md"] = DOCS / "getting-started.md"

#: Per page, (text in the page, what the test runs instead).
SHRINK: dict[str, list[tuple[str, str]]] = {
    "own-molecule.md": [
        ("pretrain_steps = 1500", "pretrain_steps = 30"),
        ("pretrain_warmup_steps = 100", "pretrain_warmup_steps = 5"),
        ("buffer_samples = 20000", "buffer_samples = 1000"),
        ("resample_size = 10000", "resample_size = 500"),
        ("rung_steps = 200", "rung_steps = 5"),
        ("n = 20000", "n = 1000"),
        ("-n 50000", "-n 1000"),
        ("-n 100000", "-n 1000"),
    ],
    "tabg-300k.md": [
        ("--replicas 128", "--replicas 16"),
        ("--frames 48000", "--frames 160"),
        ("--report-every 50 --equilibration 5000", "--report-every 10 --equilibration 100"),
        (
            "-o runs/tabg-cpu --no-progress",
            "-o runs/tabg-cpu --no-progress --set trainer.pretrain_steps=20 "
            "--set trainer.pretrain_warmup_steps=5 --set trainer.n_rungs=2 "
            "--set trainer.buffer_samples=1000 --set trainer.resample_size=500 "
            "--set trainer.rung_steps=5 --set sample.n=1000",
        ),
        ("-n 200000", "-n 1000"),
    ],
    "discrete.md": [
        ("--no-progress", "--no-progress --set trainer.steps=150 --set sample.n=2000"),
        ("-n 10000", "-n 2000"),
    ],
    "getting-started.md": [("trainer.steps=500", "trainer.steps=50")],
}

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)")
_OPERATORS = set("|&;<>()")


def _commands(block: str) -> list[str]:
    """The commands of a bash block: backslash continuations joined, a heredoc kept whole with
    its command, blank and comment lines left out."""
    lines, commands, i = block.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        i += 1
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        heredoc = _HEREDOC.search(line)
        if heredoc:
            end = lines.index(heredoc.group(1), i)
            line, i = "\n".join([line, *lines[i : end + 1]]), end + 1
        commands.append(line)
    return commands


def _as_boltzgen_call(command: str) -> tuple[dict[str, str], list[str], str | None] | None:
    """``(environment, argv, stdout file)`` of a plain ``boltzgen`` command, else ``None``."""
    if "\n" in command or "$" in command or "`" in command:
        return None
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    environment = {}
    while tokens and _ASSIGNMENT.match(tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        environment[name] = value
    output = None
    if len(tokens) >= 2 and tokens[-2] == ">":
        output, tokens = tokens[-1], tokens[:-2]
    if not tokens or tokens[0] != "boltzgen" or any(set(t) <= _OPERATORS for t in tokens):
        return None
    return environment, tokens[1:], output


def _run_page(name: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Run every bash and python block of the page ``name`` (shrunk) in ``folder``; return
    what each command printed, by command."""
    text = PAGES[name].read_text()
    for old, new in SHRINK.get(name, []):
        assert old in text, f"{name} no longer contains {old!r}: update SHRINK"
        text = text.replace(old, new)
    blocks = [(tag, code) for tag, code in code_blocks(text) if tag in ("bash", "python")]
    assert blocks, f"{name} has no bash or python block"

    wrapper = folder / ".bin" / "boltzgen"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m boltzgen "$@"\n')
    wrapper.chmod(0o755)
    environment = os.environ | {
        "PATH": f"{wrapper.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    monkeypatch.chdir(folder)
    printed: dict[str, str] = {}
    for index, (tag, code) in enumerate(blocks):
        if tag == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                run_python(code, f"{name} block {index + 1}")
            printed[code] = out.getvalue()
            continue
        for command in _commands(code):
            call = _as_boltzgen_call(command)
            if call is None:
                result = subprocess.run(
                    ["bash", "-e", "-o", "pipefail", "-c", command],
                    env=environment,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert result.returncode == 0, f"{command!r} failed: {result.stderr[-2000:]}"
                printed[command] = result.stdout
                continue
            variables, argv, output = call
            out = io.StringIO()
            with monkeypatch.context() as patch, contextlib.redirect_stdout(out):
                for key, value in variables.items():
                    patch.setenv(key, value)
                code_ = main(argv)
            assert code_ == 0, f"{command!r} exited with {code_}: {out.getvalue()[-2000:]}"
            if output is not None:
                Path(output).write_text(out.getvalue())
            printed[command] = out.getvalue()
    return printed


def _printed(printed: dict[str, str], start: str) -> str:
    """What the one command or block beginning with ``start`` printed."""
    (text,) = [out for command, out in printed.items() if command.lstrip().startswith(start)]
    return text


def _assert_report(path: Path, min_images: int) -> None:
    """A report exists, and at least ``min_images`` of its images decode to real pictures."""
    sources = image_sources(path.read_text())
    assert len(sources) >= min_images, f"{path}: {len(sources)} images"
    for source in sources:
        pixels = decode_image(source, path)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and float(pixels.std()) > 0


def _summary(run: str) -> dict:
    summary = json.loads(Path(run, "summary.json").read_text())
    assert 0.0 < summary["ess"] <= 1.0 and summary["energy_evaluations"] >= 0
    return summary


def test_every_tutorial_page_is_in_shrink() -> None:
    """A new tutorial must say how its test shrinks it (an empty list if it needs nothing)."""
    assert {"own-molecule.md", "tabg-300k.md", "discrete.md"} <= set(PAGES)
    assert set(PAGES) == set(SHRINK), "add the page to SHRINK in tests/test_tutorials.py"


def test_command_parsing() -> None:
    """What runs in process and what goes to bash."""
    assert _commands("a \\\n  b\n# c\n\ncat > f <<'EOF'\nx = 1\nEOF\nd\n") == [
        "a  b",
        "cat > f <<'EOF'\nx = 1\nEOF",
        "d",
    ]
    assert _as_boltzgen_call("OMP_NUM_THREADS=1 boltzgen train a.toml --set 'x=1 2'") == (
        {"OMP_NUM_THREADS": "1"},
        ["train", "a.toml", "--set", "x=1 2"],
        None,
    )
    assert _as_boltzgen_call("boltzgen evaluate r --json > r/e.json") == (
        {},
        ["evaluate", "r", "--json"],
        "r/e.json",
    )
    assert _as_boltzgen_call("boltzgen x | head") is None
    assert _as_boltzgen_call("cat x") is None


def test_getting_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run_page("getting-started.md", tmp_path, monkeypatch)
    summary = _summary("runs/toy")
    assert summary["steps"] == 50 and math.isfinite(summary["log_z_estimate"])
    _assert_report(tmp_path / "runs/toy/report.html", 1)


def test_own_molecule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    printed = _run_page("own-molecule.md", tmp_path, monkeypatch)
    structure = mdtraj.load("gly.pdb")
    assert structure.n_atoms == 19 and [r.name for r in structure.top.residues] == [
        "ACE",
        "GLY",
        "NME",
    ]
    assert "n_atoms        19" in _printed(printed, "boltzgen systems show")
    assert "passed" in _printed(printed, "boltzgen energy check")
    summary = _summary("runs/gly")
    assert summary["sample_temperature"] == 600.0 and summary["n_samples"] == 1000
    ladder = json.loads(Path("runs/gly/ladder.json").read_text())
    assert ladder["complete"] and ladder["temperatures"][-1] == 600.0
    for prefix, temperature in [("extra", 600.0), ("extra-900K", 900.0)]:
        samples = mdtraj.load(f"runs/gly/{prefix}.dcd", top=f"runs/gly/{prefix}.pdb")
        weights = np.load(f"runs/gly/{prefix}.weights.npz")
        assert samples.n_frames == 1000 and float(weights["temperature"]) == temperature
        assert np.isfinite(weights["log_weights"]).mean() > 0.9
    frames, ess, flow, reweighted = re.search(
        r"(\d+) frames, ESS ([\d.]+)\nfraction with phi > 0: flow ([\d.]+), reweighted ([\d.]+)",
        _printed(printed, "import mdtraj"),
    ).groups()
    assert int(frames) == 1000 and 0 < float(ess) <= 1
    assert 0 <= float(flow) <= 1 and 0 <= float(reweighted) <= 1
    _assert_report(tmp_path / "runs/gly/report.html", 4)


def test_tabg_300k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    printed = _run_page("tabg-300k.md", tmp_path, monkeypatch)
    test_split = np.load("reference/alanine-dipeptide/test.npz")
    assert test_split["positions"].shape[1:] == (22, 3) and test_split["phi"].shape[1] == 1
    ladder = json.loads(Path("runs/tabg-cpu/ladder.json").read_text())
    assert ladder["temperatures"] == [1200.0, 600.0, 300.0, 300.0] and ladder["complete"]
    rungs = _printed(printed, "import json").splitlines()
    assert rungs[0].startswith("pretraining at 1200.0 K") and len(rungs) == 4
    assert rungs[-1].startswith("anneal-3-T300: 300 K -> 300 K, buffer ESS")
    evaluation = json.loads(Path("runs/tabg-cpu/evaluation.json").read_text())
    assert evaluation["n_samples"] == 1000 and evaluation["temperature"] == 300.0
    assert evaluation["n_reference"] == len(test_split["phi"])
    assert math.isfinite(evaluation["nll"]) and 0 <= evaluation["ramachandran_tv"][0] <= 1 + 1e-9
    _summary("runs/tabg-cpu")
    _assert_report(tmp_path / "runs/tabg-cpu/report.html", 4)


def test_discrete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    printed = _run_page("discrete.md", tmp_path, monkeypatch)
    exact = json.loads(_printed(printed, "boltzgen exact"))
    assert exact["n_spins"] == 20 and abs(exact["log_z"] - 17.190) < 1e-3
    for run, objective in [
        ("runs/cw-rd", "ratio-divergence"),
        ("runs/cw-fkl", "forward-kl-pcd"),
        ("runs/cw-frkl", "forward-reverse-kl"),
    ]:
        summary = _summary(run)
        assert summary["steps"] == 150 and abs(summary["log_z"] - exact["log_z"]) < 1e-6
        assert 0 <= summary["exact_forward_kl"] < 10 and 0 <= summary["exact_reverse_kl"] < 10
        assert f'name = "{objective}"' in Path(run, "config.toml").read_text()
    table = _printed(printed, "import json\n\nfor run").splitlines()
    assert len(table) == 3 and all("KL(p||q)" in line for line in table)
    up = float(re.search(r"up mode ([\d.]+)", _printed(printed, "import torch")).group(1))
    assert 0.2 < up < 0.8  # both modes of the h = 0 target are sampled
    assert torch.load("runs/cw-rd/more.pt")["samples"].shape == (2000, 20)
    _assert_report(tmp_path / "runs/cw-rd/report.html", 1)


def test_the_api_reference_covers_the_public_api() -> None:
    """Every name of ``boltzgen.__all__`` (but the version) has a ``:::`` entry in docs/api/
    that resolves to the very object ``boltzgen`` exports."""
    documented = []
    for page in sorted((DOCS / "api").glob("*.md")):
        for identifier in re.findall(r"^::: ([\w.]+)", page.read_text(), flags=re.M):
            module, _, attribute = identifier.rpartition(".")
            documented.append(getattr(__import__(module, fromlist=[attribute]), attribute))
    missing = [
        name
        for name in boltzgen.__all__
        if name != "__version__" and not any(getattr(boltzgen, name) is o for o in documented)
    ]
    assert not missing, f"not in the API reference (docs/api/*.md): {missing}"
