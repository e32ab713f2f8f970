"""``boltzgen systems list|show`` and ``boltzgen build``: JSON fields, files, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import mdtraj
import pytest

from boltzgen.cli.main import main
from boltzgen.molecule.molecule import Molecule


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_systems_list_json(capsys):
    listing = _json(capsys, ["systems", "list", "--json"])
    names = [system["name"] for system in listing["systems"]]
    assert names == Molecule.catalog_names()
    atoms = {system["name"]: system["n_atoms"] for system in listing["systems"]}
    assert atoms["alanine-dipeptide"] == 22 and atoms["ala3"] == 42 and atoms["ala5-vacuum"] == 62


def test_systems_show_alanine_dipeptide_json(capsys):
    shown = _json(capsys, ["systems", "show", "alanine-dipeptide", "--json"])
    assert shown["n_atoms"] == 22 and shown["n_residues"] == 3 and shown["n_dof"] == 60
    assert shown["forcefield"] == ["amber96.xml"] and shown["solvent"] == ["implicit/obc1.xml"]
    assert shown["constraints"] == "none" and shown["temperature"] == 300.0


def test_systems_show_overrides_and_sequences(capsys):
    shown = _json(
        capsys,
        [
            "systems",
            "show",
            "alanine-dipeptide",
            "--solvent",
            "vacuum",
            "--constraints",
            "hbonds",
            "--temperature",
            "400",
            "--json",
        ],
    )
    assert shown["solvent"] == [] and shown["n_dof"] == 60 - 12 and shown["temperature"] == 400.0
    shown = _json(capsys, ["systems", "show", "seq:GG", "--forcefield", "amber96.xml", "--json"])
    assert shown["residues"] == ["ACE", "GLY", "GLY", "NME"] and shown["forcefield"] == [
        "amber96.xml"
    ]


def test_build_writes_a_pdb_mdtraj_reads(tmp_path, capsys):
    out = tmp_path / "aaa.pdb"
    summary = _json(
        capsys, ["build", "AAA", "-o", str(out), "--solvent", "amber99_obc.xml", "--json"]
    )
    assert summary["n_atoms"] == 42 and summary["solvent"] == ["amber99_obc.xml"]
    trajectory = mdtraj.load(str(out))
    assert trajectory.n_atoms == 42 and mdtraj.compute_phi(trajectory)[0].shape == (3, 4)
    shown = _json(capsys, ["systems", "show", str(out), "--json"])  # a PDB file as MOLECULE
    assert shown["n_atoms"] == 42 and shown["source"] == str(out)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["systems", "show", "ala4"], "unknown catalog system 'ala4'"),
        (
            ["systems", "show", "alanine-dipeptide", "--solvent", "water"],
            "unknown solvent 'water'",
        ),
        (["systems", "show", "seq:AZ"], "bad peptide sequence"),
        (["build", "AAA"], "required: -o"),
    ],
)
def test_user_errors_exit_2_with_one_line(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1 and captured.out == ""


def test_missing_hydrogens_through_the_real_command(tmp_path):
    pdb = tmp_path / "heavy.pdb"
    Molecule.from_catalog("alanine-dipeptide").write_pdb(pdb)
    lines = pdb.read_text().splitlines(True)
    pdb.write_text(
        "".join(
            l for l in lines if not (l.startswith(("ATOM", "HETATM")) and l[76:78].strip() == "H")
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "boltzgen",
            "systems",
            "show",
            str(pdb),
            "--forcefield",
            "amber96.xml",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "no template for residue ACE 1" in result.stderr
