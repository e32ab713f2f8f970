"""Cartesian <-> internal coordinates (bonds, angles, torsions) with exact log-det Jacobians.

:class:`InternalCoordinates` maps a batch of Cartesian positions ``(B, N, 3)`` in nm to the
3N-6 internal coordinates of a :class:`~boltzgen.zmatrix.ZMatrix` (bond lengths in nm, angles
and torsions in radians) and back. The inverse places the atoms in the *canonical frame*: the
first atom at the origin, the second on the +x axis, the third in the xy plane (y > 0), every
further atom by the natural extension reference frame (NeRF) from its three partners,
vectorised over the batch and over all atoms of one Z-matrix generation.

Log-det and reference measure. Densities are over positions *modulo rigid motions*: the
Boltzmann density of the 3N Cartesian coordinates, integrated over translations and rotations,
expressed in the 3N-6 internal coordinates. Writing x as (translation t, orientation R, internal
coordinates f) with atom 2 in direction R e_x from atom 1 and atom 3 in the plane R(e_x, e_y),
the Jacobian of the full 3N map factorises into the Haar density of R (``sin beta`` for ZYZ Euler
angles), the unit translation Jacobian and::

    log |det d(Cartesian) / d(t, R, internal)| - log(Haar density)
        = 2 log b_2 + 2 log b_3 + log sin a_3 + sum_{p >= 4} (2 log b_p + log sin a_p)

with ``b_p`` and ``a_p`` the bond length and angle of the ``p``-th placed atom. Of the first
three atoms' factors, ``b_3`` comes from atom 3's polar coordinates in the canonical frame and
``b_2^2 b_3 sin a_3`` is the volume of the rotation orbit through x (atom 2 sweeps a sphere of
radius b_2, atom 3 a circle of radius ``b_3 sin a_3`` about the 1-2 axis). Integrating t over
the box and R over SO(3) multiplies every configuration by the same ``V 8 pi^2``, which is
dropped (it cancels in self-normalized weights; log Z and NLL are stated up to it).
``inverse`` returns this value, ``forward`` its negative; ``inverse`` places the atoms in the
canonical frame (t = 0, R = 1). Constrained bonds (e.g. X-H under OpenMM's ``HBonds``) are not
features: they are restored as constants and their ``b^2`` factor enters with the constant
length, which is the density on the constraint surface relative to Cartesian volume with the
constrained lengths integrated out against delta functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from openmm import app, unit
from torch import Tensor, nn

from ..errors import BoltzgenError
from .zmatrix import ZMatrix, build_zmatrix, equivalent_hydrogen_groups, find_stereocentres

__all__ = [
    "FEATURE_KINDS",
    "ANGLE_MARGIN",
    "HANDEDNESS_MIN_SINE",
    "InternalCoordinates",
    "bond_lengths",
    "bond_angles",
    "dihedral_angles",
    "backbone_dihedral_indices",
]

#: Kinds of internal-coordinate features, in the order the features are laid out.
FEATURE_KINDS = ("bond", "angle", "torsion")

#: Margin (radians) that keeps angle domains away from 0 and pi, where log sin diverges.
ANGLE_MARGIN = 0.01

#: Sibling-relative torsions whose reference value has |sin| at least this (30 degrees from 0 or
#: pi) fix a handedness; the others (planar centres) do not.
HANDEDNESS_MIN_SINE = 0.5


def bond_lengths(x: Tensor, pairs: Tensor) -> Tensor:
    """Distances ``|x_i - x_j|``: ``x (B, N, 3)``, ``pairs (M, 2)`` -> ``(B, M)``."""
    return (x[:, pairs[:, 0]] - x[:, pairs[:, 1]]).norm(dim=-1)


def bond_angles(x: Tensor, triples: Tensor) -> Tensor:
    """Angles i-j-k at the vertex j in radians, ``triples (M, 3)`` -> ``(B, M)`` in [0, pi]."""
    u = x[:, triples[:, 0]] - x[:, triples[:, 1]]
    v = x[:, triples[:, 2]] - x[:, triples[:, 1]]
    return torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(dim=-1))


def dihedral_angles(x: Tensor, quadruples: Tensor) -> Tensor:
    """Dihedrals i-j-k-l in radians (IUPAC sign, as mdtraj): ``(M, 4)`` -> ``(B, M)``, (-pi,
    pi]."""
    p0, p1, p2, p3 = (x[:, quadruples[:, c]] for c in range(4))
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    c1, c2 = torch.linalg.cross(b2, b3), torch.linalg.cross(b1, b2)
    y = (b1 * c1).sum(dim=-1) * b2.norm(dim=-1)
    return torch.atan2(y, (c1 * c2).sum(dim=-1))


def _place(
    j: Tensor, k: Tensor, l: Tensor, bond: Tensor, angle: Tensor, torsion: Tensor
) -> Tensor:
    """NeRF: positions ``(B, M, 3)`` of atoms i with |i-j| = bond, angle i-j-k, torsion i-j-k-l."""
    axis = j - k
    axis = axis / axis.norm(dim=-1, keepdim=True)
    normal = torch.linalg.cross(k - l, axis)
    normal = normal / normal.norm(dim=-1, keepdim=True)
    in_plane = torch.linalg.cross(normal, axis)
    radial = bond * angle.sin()
    return j + (
        (-bond * angle.cos()).unsqueeze(-1) * axis
        + (radial * torsion.cos()).unsqueeze(-1) * in_plane
        + (radial * torsion.sin()).unsqueeze(-1) * normal
    )


def backbone_dihedral_indices(topology: app.Topology) -> tuple[np.ndarray, np.ndarray]:
    """Atom quadruples of the backbone phi and psi angles, chosen by atom names as mdtraj does.

    phi of residue r is C(r-1)-N(r)-CA(r)-C(r) and psi is N(r)-CA(r)-C(r)-N(r+1), for residues
    of one chain whose neighbours in residue index hold the named atoms (so the caps ACE and NME
    of a capped peptide contribute the outer C and N).

    Returns:
        ``(phi, psi)`` integer arrays of shapes ``(n_phi, 4)`` and ``(n_psi, 4)``.
    """
    names: dict[tuple[int, int], dict[str, int]] = {}
    for residue in topology.residues():
        names[(residue.chain.index, residue.index)] = {a.name: a.index for a in residue.atoms()}

    def sequence(pattern: Sequence[tuple[str, int]]) -> np.ndarray:
        found = []
        for chain, index in names:
            atoms = [names.get((chain, index + offset), {}).get(name) for name, offset in pattern]
            if None not in atoms:
                found.append(atoms)
        return np.asarray(found, dtype=np.int64).reshape(-1, 4)

    phi = sequence([("C", -1), ("N", 0), ("CA", 0), ("C", 0)])
    psi = sequence([("N", 0), ("CA", 0), ("C", 0), ("N", 1)])
    return phi, psi


def _index(values: object) -> Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.int64).reshape(-1))


def _atom_label(atom: app.Atom) -> str:
    return f"{atom.residue.name}{atom.residue.id}:{atom.name}"


class InternalCoordinates(nn.Module):
    """Cartesian <-> internal coordinates of one molecule, with exact log-det Jacobians.

    Arguments:
        topology: OpenMM topology of one bonded molecule (atom i is row i of the positions).
        reference_positions: Reference (e.g. energy-minimized) positions in nm, shape
            ``(N, 3)``; they choose collinearity-safe partners, centre the domains and fix the
            reference chirality.
        constrained_bonds: ``(i, j, length_nm)`` bonds held fixed (OpenMM constraints). Each
            must be a bond of the Z-matrix; hydrogen bonds always are.

    Features (``dim = 3N - 6 - n_constraints``, float, in this order): the free bond lengths (nm),
    the N-2 angles and the N-3 torsions (radians, torsions in (-pi, pi]), in Z-matrix placement
    order; :attr:`feature_names` and :attr:`feature_kinds` describe them.

    Chirality. :attr:`stereocentres` are heavy atoms with four distinct substituents; their
    handedness is the sign of the triple product of three substituents around the centre.
    :attr:`chirality_features` lists the sibling-relative torsions that fix a handedness
    (stereocentres, and the order of hydrogens in CH3/CH2/NH3 groups): keeping each on the
    reference's side of 0 keeps every handedness of the reference (see :meth:`domains`).

    The module holds float64 buffers and computes in the dtype and on the device of its inputs.
    """

    def __init__(
        self,
        topology: app.Topology,
        reference_positions: np.ndarray | unit.Quantity,
        constrained_bonds: Sequence[tuple[int, int, float]] = (),
    ) -> None:
        super().__init__()
        if isinstance(reference_positions, unit.Quantity):
            reference_positions = reference_positions.value_in_unit(unit.nanometer)
        reference = np.asarray(reference_positions, dtype=np.float64)
        self.zmatrix: ZMatrix = build_zmatrix(topology, reference)
        zm = self.zmatrix
        n = self.n_atoms = zm.n_atoms
        self.event_shape = torch.Size((n, 3))
        atoms = list(topology.atoms())

        constants = self._constrained_rows(zm, constrained_bonds)
        free = [p for p in range(1, n) if p not in constants]
        self.n_bonds, self.n_constraints = len(free), len(constants)
        self.dim = 3 * n - 6 - len(constants)
        const_rows = sorted(constants)
        # full bond vector (rows 1..N-1) = cat(free bond features, constants)[:, bond_gather]
        slot = {p: s for s, p in enumerate(free + const_rows)}
        self.register_buffer("bond_gather", _index([slot[p] for p in range(1, n)]))
        self.register_buffer(
            "constant_bonds", torch.tensor([constants[p] for p in const_rows], dtype=torch.float64)
        )
        self.register_buffer("free_bond_rows", _index([p - 1 for p in free]))
        self.register_buffer("bond_pairs", _index(zm.bonds).reshape(-1, 2))
        self.register_buffer("angle_triples", _index(zm.angles).reshape(-1, 3))
        self.register_buffer("torsion_quadruples", _index(zm.torsions).reshape(-1, 4))
        self._register_generations(zm)

        order = zm.order
        self.feature_kinds: tuple[str, ...] = (
            ("bond",) * self.n_bonds + ("angle",) * (n - 2) + ("torsion",) * (n - 3)
        )
        label = [_atom_label(a) for a in atoms]
        self.feature_names: tuple[str, ...] = tuple(
            [f"bond {label[order[p]]}-{label[zm.bond_partner[p]]}" for p in free]
            + [f"angle {label[i]}-{label[j]}-{label[k]}" for i, j, k in zm.angles]
            + [
                f"torsion {label[i]}-{label[j]}-{label[k]}-{label[l]}"
                for i, j, k, l in zm.torsions
            ]
        )
        reference_features, _ = self.forward(torch.as_tensor(reference)[None])
        self.register_buffer("reference_features", reference_features[0])
        self._register_chirality(topology, zm, reference)

    @staticmethod
    def _constrained_rows(
        zm: ZMatrix, constrained_bonds: Sequence[tuple[int, int, float]]
    ) -> dict[int, float]:
        """Z-matrix rows whose bond is constrained, and the constrained length."""
        row = {}
        for p in range(1, zm.n_atoms):
            row[frozenset((int(zm.order[p]), int(zm.bond_partner[p])))] = p
        constants: dict[int, float] = {}
        for i, j, length in constrained_bonds:
            key = frozenset((int(i), int(j)))
            if key not in row or not float(length) > 0:
                raise BoltzgenError(
                    f"constrained bond ({i}, {j}, {length}) is not a Z-matrix bond with a "
                    "positive "
                    "length: only bonds to a placed atom's bond partner (e.g. X-H) can be fixed"
                )
            constants[row[key]] = float(length)
        return constants

    def _register_generations(self, zm: ZMatrix) -> None:
        """Index buffers of the NeRF placement, one group per generation of atoms 4..N."""
        n = zm.n_atoms
        generation = np.zeros(n, dtype=np.int64)
        position = {int(a): p for p, a in enumerate(zm.order)}
        for p in range(3, n):
            partners = (zm.bond_partner[p], zm.angle_partner[p], zm.torsion_partner[p])
            generation[p] = 1 + max(generation[position[int(a)]] for a in partners)
        self.register_buffer("first_atoms", _index(zm.order[:3]))
        self._atom2_from_origin = bool(zm.bond_partner[2] == zm.order[0])
        self._generations: list[str] = []
        for g in range(1, int(generation.max(initial=0)) + 1):
            rows = np.flatnonzero(generation == g)
            name = f"generation_{g}"
            self.register_buffer(
                name,
                torch.as_tensor(
                    np.stack(
                        [
                            zm.order[rows],
                            zm.bond_partner[rows],
                            zm.angle_partner[rows],
                            zm.torsion_partner[rows],
                            rows - 1,
                            rows - 2,
                            rows - 3,
                        ]
                    )
                ),
            )
            self._generations.append(name)

    def _register_chirality(
        self, topology: app.Topology, zm: ZMatrix, reference: np.ndarray
    ) -> None:
        """Stereocentre triples, handedness torsions and their reference signs."""
        torsions = zm.torsions
        neighbours = {int(a): set() for a in zm.order}
        for bond in topology.bonds():
            neighbours[bond[0].index].add(bond[1].index)
            neighbours[bond[1].index].add(bond[0].index)
        offset = self.n_bonds + self.n_atoms - 2
        reference_torsions = self.reference_features[offset:].numpy()
        handed = [
            t
            for t, (i, j, k, l) in enumerate(torsions)
            if l in neighbours[j] and abs(math.sin(reference_torsions[t])) >= HANDEDNESS_MIN_SINE
        ]
        self.chirality_features: tuple[int, ...] = tuple(offset + t for t in handed)
        self.stereocentres: tuple[int, ...] = find_stereocentres(topology)
        triples = []
        for centre in self.stereocentres:
            at_centre = [t for t in handed if torsions[t][1] == centre]
            if at_centre:
                i, _, k, l = torsions[at_centre[0]]
                triples.append((centre, k, l, i))
            else:  # centre in the first atoms: judged, not constrained
                triples.append((centre, *sorted(neighbours[centre])[:3]))
        self.unconstrained_stereocentres: tuple[int, ...] = tuple(
            c for c in self.stereocentres if not any(torsions[t][1] == c for t in handed)
        )
        self.register_buffer("stereo_atoms", _index(triples).reshape(-1, 4))
        groups = equivalent_hydrogen_groups(topology)
        hydrogens = {h for _, members in groups for h in members}
        order_torsions = [
            offset + t
            for t in handed
            if torsions[t][0] in hydrogens and torsions[t][3] in hydrogens
        ]
        self.register_buffer("hydrogen_order_features", _index(order_torsions))
        x = torch.as_tensor(reference)[None]
        self.register_buffer("reference_chirality", self.chirality_signs(x)[0])
        self.register_buffer("reference_hydrogen_order", self._hydrogen_order_signs(x)[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Cartesian -> internal coordinates.

        Arguments:
            x: Positions in nm, shape ``(B, N, 3)``.

        Returns:
            Features ``(B, dim)`` (nm and radians) and minus the log-volume of the reference
            measure (module docstring), shape ``(B,)``.
        """
        bonds = bond_lengths(x, self.bond_pairs)
        angles = bond_angles(x, self.angle_triples)
        torsions = dihedral_angles(x, self.torsion_quadruples)
        free = bonds.index_select(1, self.free_bond_rows)
        features = torch.cat([free, angles, torsions], dim=1)
        return features, -self._log_volume(self._full_bonds(free), angles)

    def inverse(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Internal -> Cartesian coordinates in the canonical frame.

        Arguments:
            features: Internal coordinates, shape ``(B, dim)``, laid out as :meth:`forward`'s.

        Returns:
            Positions ``(B, N, 3)`` in nm and the log-volume of the reference measure, ``log
            |det d(Cartesian)/d(t, R, internal)|`` less the Haar density, shape ``(B,)``.
        """
        batch, n = features.shape[0], self.n_atoms
        bonds = self._full_bonds(features[:, : self.n_bonds])
        angles = features[:, self.n_bonds : self.n_bonds + n - 2]
        torsions = features[:, self.n_bonds + n - 2 :]
        zero = features.new_zeros(batch)
        origin = features.new_zeros(batch, 3)
        second = torch.stack([bonds[:, 0], zero, zero], dim=-1)
        # third atom: polar about its bond partner, measured from the direction to the other
        direction = 1.0 if self._atom2_from_origin else -1.0
        anchor = origin if self._atom2_from_origin else second
        third = anchor + bonds[:, 1:2] * torch.stack(
            [direction * angles[:, 0].cos(), angles[:, 0].sin(), zero], dim=-1
        )
        x = features.new_zeros(batch, n, 3).index_copy(
            1, self.first_atoms, torch.stack([origin, second, third], dim=1)
        )
        for name in self._generations:
            atom, j, k, l, bond, angle, torsion = getattr(self, name)
            placed = _place(
                x[:, j], x[:, k], x[:, l], bonds[:, bond], angles[:, angle], torsions[:, torsion]
            )
            x = x.index_copy(1, atom, placed)
        return x, self._log_volume(bonds, angles)

    def _full_bonds(self, free: Tensor) -> Tensor:
        """All N-1 bond lengths ``(B, N-1)`` from the free ones, constants restored."""
        constants = self.constant_bonds.to(free.dtype).expand(free.shape[0], -1)
        return torch.cat([free, constants], dim=1).index_select(1, self.bond_gather)

    @staticmethod
    def _log_volume(bonds: Tensor, angles: Tensor) -> Tensor:
        """sum_{p >= 2} 2 log b_p + sum_{p >= 3} log sin a_p (rotation orbit included), ``(B,)``.

        ``bonds (B, N-1)`` are b_2..b_N, ``angles (B, N-2)`` a_3..a_N.
        """
        return 2 * bonds.log().sum(dim=1) + angles.sin().log().sum(dim=1)

    def chirality_signs(self, x: Tensor) -> Tensor:
        """Handedness of each stereocentre: sign of (a - c) . ((b - c) x (d - c)).

        Arguments:
            x: Positions ``(B, N, 3)``.

        Returns:
            Signs (+1, -1, 0 if degenerate) of shape ``(B, n_stereocentres)``, dtype of ``x``.
        """
        centre, a, b, d = (x[:, self.stereo_atoms[:, c]] for c in range(4))
        triple = ((a - centre) * torch.linalg.cross(b - centre, d - centre)).sum(dim=-1)
        return triple.sign()

    def chirality_ok(self, x: Tensor) -> Tensor:
        """Whether every stereocentre has the reference's handedness, ``(B, N, 3) -> (B,)``
        bool."""
        return (self.chirality_signs(x) == self.reference_chirality.to(x.dtype)).all(dim=-1)

    def _hydrogen_order_signs(self, x: Tensor) -> Tensor:
        quadruples = self.torsion_quadruples[
            self.hydrogen_order_features - self.n_bonds - self.n_atoms + 2
        ]
        return dihedral_angles(x, quadruples).sign()

    def hydrogen_order_ok(self, x: Tensor) -> Tensor:
        """Whether the hydrogens of every CH3/CH2/NH3 group keep the reference's order.

        Arguments:
            x: Positions ``(B, N, 3)``.

        Returns:
            ``(B,)`` bool: the sign of each hydrogen-to-hydrogen relative torsion in
            :attr:`chirality_features` matches the reference.
        """
        reference = self.reference_hydrogen_order.to(x.dtype)
        return (self._hydrogen_order_signs(x) == reference).all(dim=-1)

    def extra_repr(self) -> str:
        return (
            f"n_atoms={self.n_atoms}, dim={self.dim}, n_constraints={self.n_constraints}, "
            f"stereocentres={len(self.stereocentres)}, "
            f"chirality_features={len(self.chirality_features)}"
        )
