"""Property-based fuzzing (hypothesis) of the input surfaces: config files and ``--set``
overrides, every key of every registered factory, checkpoints and sample files, PDB files.

Property, for every generated input: the call either succeeds or raises a one-line
``BoltzgenError``; any other exception (a traceback for a user) fails the test. The example count
is bounded (profile ``bounded`` in ``tests/conftest.py``, derandomized); ``pytest --fuzz-long``
runs thousands per test.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from boltzgen.errors import BoltzgenError  # noqa: E402
from boltzgen.io import load_checkpoint, save_checkpoint  # noqa: E402
from boltzgen.io.samples import load_samples, save_samples  # noqa: E402
from boltzgen.workflow.config import apply_overrides, check_structure, load_config  # noqa: E402
from boltzgen.workflow.registry import _REGISTRIES, PROTOCOLS, resolve_config, schema  # noqa: E402

BASE = {
    "target": {"name": "gaussian-mixture"},
    "model": {"name": "coupling-flow"},
    "trainer": {"name": "reverse-kl"},
}
#: (section, factory, key) of every config key of every registered factory.
KEYS = sorted(
    {(s, n, k) for s, registry in _REGISTRIES.items() for n in registry for k in schema(s, n)}
    | {("trainer", n, k) for n, cls in PROTOCOLS.items() for k in cls.config_keys()}
)
ALANINE = (
    Path(__file__).parents[1] / "boltzgen" / "catalog" / "alanine-dipeptide" / "structure.pdb"
)

#: TOML-representable values of every kind, with the numeric edge cases.
SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 2**62, -(2**62)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e300, -1e300, 1e-300]),
    st.booleans(),
    st.text(max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)


def _one_line_error(call) -> BoltzgenError | None:
    """Run ``call``; return its BoltzgenError (checked to be one line) or None on success."""
    try:
        call()
    except BoltzgenError as error:
        message = str(error)
        assert message and "\n" not in message, repr(message)
        return error
    return None


@given(value=VALUES, extra=st.booleans())
def test_any_value_of_every_factory_key_resolves_or_is_one_line(value, extra) -> None:
    """One drawn TOML value (wrong type, NaN, inf, huge, zero, negative, tables, arrays) put in
    every key of every registered factory in turn, optionally with an unknown key beside it."""
    for section, name, key in KEYS:
        config = {s: dict(t) for s, t in BASE.items()}
        config[section] = {"name": name, key: value}
        if section == "trainer" and name == "ta-bg" and key != "t_high":
            config[section]["t_high"] = 1000.0
        if extra:
            config[section]["no_such_key_x"] = 1
        error = _one_line_error(lambda config=config: resolve_config(config))
        if extra:
            assert error is not None and "no_such_key_x" in str(error)


@given(data=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_any_config_file_loads_or_is_one_line(tmp_path_factory, data: bytes) -> None:
    """Arbitrary bytes and text as a config file (empty, binary, non-UTF-8, bad TOML, duplicate
    keys, missing tables), then resolved when it parses."""
    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    path.write_bytes(data)

    def load_and_resolve() -> None:
        resolve_config(load_config(path))

    _one_line_error(load_and_resolve)


TOML_PIECES = st.sampled_from(
    [
        "[target]\n",
        "[model]\n",
        "[trainer]\n",
        "[sample]\n",
        "[target]\n[target]\n",
        'name = "gaussian-mixture"\n',
        'name = "coupling-flow"\n',
        'name = "reverse-kl"\n',
        "steps = 10\nsteps = 11\n",
        "lr = nan\n",
        "lr = inf\n",
        "batch_size = -1\n",
        "batch_size = 0\n",
        "seed = 99999999999999999999\n",
        'dtype = "float16"\n',
        "target = 3\n",
        "[target.sub]\n",
        "x = [[[[1]]]]\n",
        "temperature = 1e309\n",
        'device = "tpu"\n',
        "\x00",
        "\xff",
        "= 1\n",
        "a.b.c = 1\n",
    ]
)


@given(pieces=st.lists(TOML_PIECES, max_size=12))
def test_structured_config_files_load_or_are_one_line(tmp_path_factory, pieces) -> None:
    """Configs built from plausible TOML pieces: duplicate tables and keys, missing tables,
    NaN / inf / negative / zero values, unknown top-level keys."""
    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    path.write_text("".join(pieces), encoding="utf-8")
    _one_line_error(lambda: resolve_config(load_config(path)))


def test_a_folder_and_a_missing_file_as_config_are_one_line(tmp_path: Path) -> None:
    assert _one_line_error(lambda: load_config(tmp_path)) is not None
    assert _one_line_error(lambda: load_config(tmp_path / "absent.toml")) is not None


@given(
    overrides=st.lists(
        st.text(max_size=30)
        | st.sampled_from(
            [
                "=",
                "a=",
                "=1",
                "target=1",
                "target.name.x=1",
                "trainer.steps=[",
                "model=x",
                ".=1",
                "a..b=1",
                "trainer.lr=nan",
                "seed=-1",
                "x=\x00",
            ]
        ),
        max_size=4,
    )
)
def test_any_set_override_applies_or_is_one_line(overrides) -> None:
    """Malformed ``--set`` overrides on a valid config."""

    def apply() -> None:
        config = apply_overrides(BASE, overrides)
        check_structure(config)
        resolve_config(config)

    _one_line_error(apply)


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(40.0).reshape(4, 10)}, "step": 3})
    return path.read_bytes()


@given(data=st.data())
def test_damaged_checkpoints_are_one_line(tmp_path_factory, checkpoint_bytes, data) -> None:
    """A real checkpoint truncated anywhere (zero bytes included), with bytes overwritten, or
    with garbage appended: never loaded silently wrong, never a traceback."""
    blob = bytearray(checkpoint_bytes)
    mode = data.draw(st.sampled_from(["truncate", "overwrite", "append"]))
    if mode == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif mode == "overwrite":
        at = data.draw(st.integers(0, len(blob) - 1))
        patch = data.draw(st.binary(min_size=1, max_size=16))
        blob[at : at + len(patch)] = patch
    else:
        blob += data.draw(st.binary(min_size=1, max_size=64))
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    path.write_bytes(bytes(blob))
    error = _one_line_error(lambda: load_checkpoint(path))
    if error is None:  # only unchanged tensors may load (e.g. bytes overwritten by themselves)
        state = load_checkpoint(path)
        assert torch.equal(state["model"]["w"], torch.arange(40.0).reshape(4, 10))


@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_as_checkpoint_or_samples_are_one_line(tmp_path_factory, data) -> None:
    folder = tmp_path_factory.mktemp("bytes")
    (folder / "a.pt").write_bytes(data)
    assert _one_line_error(lambda: load_checkpoint(folder / "a.pt")) is not None
    _one_line_error(lambda: load_samples(folder / "a.pt"))


class _Probe:
    """Unpickling this runs ``Path(marker).touch()``: the code-execution probe."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("wrap", ["raw-pickle", "torch-zip"])
def test_a_pickle_that_runs_code_is_never_executed(tmp_path: Path, wrap: str) -> None:
    """A checkpoint / sample file whose unpickling would create a marker file: refused with one
    line by both loaders, and the marker never appears."""
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    payload = {"format": "boltzgen-checkpoint", "samples": _Probe(str(marker))}
    if wrap == "raw-pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path.write_bytes(buffer.getvalue())
    assert not marker.exists()
    assert _one_line_error(lambda: load_checkpoint(path)) is not None
    assert _one_line_error(lambda: load_samples(path)) is not None
    assert not marker.exists(), "loading ran code from the file"


@given(
    shape=st.lists(st.integers(0, 5), max_size=3),
    key=st.sampled_from(["samples", "other"]),
    fill=st.sampled_from([0.0, math.nan, math.inf]),
)
def test_sample_files_of_any_shape_load_or_are_one_line(
    tmp_path_factory, shape, key, fill
) -> None:
    """Sample files with other keys, shapes (0-d, empty) and NaN / inf content."""
    path = tmp_path_factory.mktemp("samples") / "s.pt"
    _one_line_error(
        lambda: (
            save_samples(path, torch.full(shape, fill))
            if key == "samples"
            else torch.save({"other": torch.zeros(shape)}, path)
        )
    )
    if path.exists():
        _one_line_error(lambda: load_samples(path))


def _mutate_pdb(lines: list[str], data) -> list[str]:
    """One PDB damage: truncation, a deleted line, a coordinate set to NaN / 1e30 / an atom's
    twin, a renamed residue or atom, a garbage line, a chain break (a residue removed) or a TER
    record inside the chain."""
    atoms = [i for i, line in enumerate(lines) if line.startswith(("ATOM", "HETATM"))]
    mode = data.draw(
        st.sampled_from(
            ["truncate", "delete", "coord", "resname", "atomname", "junk", "break", "ter"]
        )
    )
    lines = list(lines)
    i = data.draw(st.sampled_from(atoms))
    if mode == "truncate":
        cut = data.draw(st.integers(0, sum(map(len, lines))))
        text = "".join(lines)[:cut]
        return text.splitlines(keepends=True)
    if mode == "break":  # a chain break: every atom of the residue of line i removed
        residue = lines[i][17:27]
        return [line for line in lines if not (line.startswith("ATOM") and line[17:27] == residue)]
    if mode == "ter":  # a TER record (chain end) after line i
        lines.insert(i + 1, "TER\n")
        return lines
    if mode == "delete":
        del lines[i]
    elif mode == "coord":
        value = data.draw(
            st.sampled_from(["     nan", " 1.0e+30", "   0.000", "********", "  abcdef"])
        )
        line = lines[i].ljust(54)
        lines[i] = line[:30] + value + value + value + line[54:]
    elif mode == "resname":
        lines[i] = (
            lines[i][:17]
            + data.draw(st.sampled_from(["XYZ", "HOH", " NA", "UNK"]))
            + lines[i][20:]
        )
    elif mode == "atomname":
        j = data.draw(st.sampled_from(atoms))
        lines[i] = lines[i][:12] + lines[j][12:16] + lines[i][16:]
    else:
        lines.insert(i, data.draw(st.text(max_size=80)).replace("\n", " ") + "\n")
    return lines


@given(data=st.data())
def test_damaged_pdb_files_load_or_are_one_line(tmp_path_factory, data) -> None:
    """Alanine dipeptide's PDB with one damage; also 0-byte and binary files."""
    from boltzgen.molecule import Molecule

    lines = ALANINE.read_text().splitlines(keepends=True)
    path = tmp_path_factory.mktemp("pdb") / "m.pdb"
    if data.draw(st.booleans()):
        path.write_text("".join(_mutate_pdb(lines, data)), encoding="utf-8", errors="replace")
    else:
        path.write_bytes(data.draw(st.binary(max_size=200)))
    _one_line_error(lambda: Molecule.from_pdb(path))


@given(sequence=st.text(alphabet="ACDEFGHIKLMNPQRSTVWYXBZJOU*- a1\u00e9", max_size=4))
def test_any_sequence_builds_or_is_one_line(sequence: str) -> None:
    """Peptide sequences with bad letters, spaces, lower case and empty ones (built without
    minimization to stay fast; the minimizer's bound is tested in ``test_geometry.py``)."""
    from boltzgen.molecule import Molecule

    _one_line_error(lambda: Molecule.from_sequence(sequence, minimize=False))


CLI_CASES = {
    "empty config": (b"", ["train", "{cfg}"]),
    "binary config": (b"\xff\xfe\x00garbage", ["train", "{cfg}"]),
    "duplicate key": (b'[target]\nname = "a"\nname = "b"\n', ["train", "{cfg}"]),
    "nan lr": (None, ["train", "{cfg}", "--set", "trainer.lr=nan"]),
    "malformed --set": (None, ["train", "{cfg}", "--set", "=3"]),
    "unknown key": (None, ["train", "{cfg}", "--set", "trainer.no_such_key=1"]),
    "zero-byte pdb": (b"", ["systems", "show", "{cfg}"]),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_bad_input_exits_2_with_one_line_and_leaves_no_output(
    tmp_path: Path, case: str
) -> None:
    """The command line in a subprocess: exit code 2, one stderr line without a traceback, and
    no run folder left behind."""
    import subprocess
    import sys

    from boltzgen.workflow.templates import template_with

    content, argv = CLI_CASES[case]
    cfg = tmp_path / ("in.pdb" if argv[0] == "systems" else "in.toml")
    cfg.write_bytes(
        content if content is not None else template_with("toy-smoke", []).encode("utf-8")
    )
    out = tmp_path / "run"
    command = [a.replace("{cfg}", str(cfg)) for a in argv]
    if command[0] == "train":
        command += ["-o", str(out), "--no-progress"]
    result = subprocess.run(
        [sys.executable, "-m", "boltzgen", *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()


_REFERENCE_KEYS = ("positions", "reduced_energies", "phi", "psi", "step", "chain")


@given(
    drop=st.sets(st.sampled_from(_REFERENCE_KEYS), max_size=2),
    frames=st.integers(0, 4),
    atoms=st.sampled_from([22, 5, 0]),
    angles=st.sampled_from([(1, 1), (2, 2), (1, 0), (0, 0)]),
    nan_rows=st.integers(0, 2),
    fill=st.sampled_from([math.nan, math.inf]),
    cut=st.one_of(st.none(), st.integers(0, 400)),
)
def test_damaged_reference_datasets_load_or_are_one_line(
    tmp_path_factory, drop, frames, atoms, angles, nan_rows, fill, cut
) -> None:
    """A reference split (``boltzgen reference``'s ``.npz``) with keys missing, other shapes
    (no frames, other atom counts, phi/psi of different widths), NaN / inf frames or truncated
    bytes: every reader (the dataset loader, the report's and evaluate's) loads it or gives one
    line; what loads holds only finite frames of consistent shapes."""
    from boltzgen.diagnostics.report import load_reference as report_reference
    from boltzgen.md.datasets import load_reference as dataset_split

    folder = tmp_path_factory.mktemp("reference")
    arrays = {
        "positions": np.ones((frames, atoms, 3), np.float32),
        "reduced_energies": np.zeros(frames),
        "phi": np.zeros((frames, angles[0])),
        "psi": np.zeros((frames, angles[1])),
        "step": np.arange(frames),
        "chain": np.zeros(frames, int),
    }
    for key in ("positions", "phi", "reduced_energies"):
        arrays[key][: min(nan_rows, frames)] = fill
    np.savez(folder / "train.npz", **{k: v for k, v in arrays.items() if k not in drop})
    if cut is not None:
        data = (folder / "train.npz").read_bytes()
        (folder / "train.npz").write_bytes(data[:cut])
    split = {}
    if _one_line_error(lambda: split.update(dataset_split(folder, "train"))) is None:
        n = split["positions"].shape[0]
        assert split["positions"].ndim == 3 and np.isfinite(split["positions"]).all()
        assert all(split[key].shape[0] == n for key in _REFERENCE_KEYS)
    loaded = []
    if _one_line_error(lambda: loaded.append(report_reference(folder / "train.npz"))) is None:
        phi, psi = loaded[0].angles
        assert phi.shape == psi.shape and np.isfinite(phi).all()
        energies = loaded[0].reduced_energies
        assert energies is None or (energies.shape == (phi.shape[0],))
    _one_line_error(lambda: load_samples(folder / "train.npz", key="positions"))
