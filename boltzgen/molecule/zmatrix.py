"""Z-matrices built automatically from a molecule's bond graph, and its stereochemistry.

A Z-matrix places the atoms of a molecule one after another: the first atom at the origin, the
second at a bond length from it, the third by a bond length and an angle, and every further atom
``i`` by its bond length to a *bond partner* ``j``, the angle ``i-j-k`` with an *angle partner*
``k`` and the torsion ``i-j-k-l`` with a *torsion partner* ``l``, all placed before ``i``.
:func:`build_zmatrix` reads the partners off the topology's bonds (no hand-written tables):

* heavy atoms first, depth-first along a breadth-first spanning tree of the heavy-atom graph
  rooted at the first terminal heavy atom (in topology order); at every fork the *backbone* (the
  tree path to the last terminal heavy atom, e.g. ACE CH3 to NME C of a capped peptide) comes
  first, then the longer branches;
  then the hydrogens, each bonded to its heavy atom;
* ``j`` is the atom's parent in that tree, ``k`` the parent's parent where there is one;
* ``l`` is, in order of preference, an already placed *sibling* (another neighbour of ``j``),
  which makes the torsion the rotation of ``i`` about the ``j-k`` axis relative to that
  sibling (near +-120 degrees at an sp3 centre, so its sign fixes the centre's handedness and the
  order of equivalent hydrogens), else a neighbour of ``k`` (a proper chain ``i-j-k-l``, e.g. the
  backbone phi/psi), else the nearest placed atom in the graph;
* given reference positions, partners that form near-collinear triples (the angle ``i-j-k`` or
  the reference plane ``j-k-l`` within :data:`COLLINEAR_TOLERANCE` of a straight line) are
  skipped for the next candidate; any that remain are listed in :attr:`ZMatrix.collinear`.

The module also finds stereocentres (heavy atoms with four topologically distinct substituents)
and groups of equivalent hydrogens (two or more hydrogens on one heavy atom).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from openmm import app, unit

from ..errors import BoltzgenError

__all__ = [
    "COLLINEAR_TOLERANCE",
    "ZMatrix",
    "build_zmatrix",
    "bond_graph",
    "find_stereocentres",
    "equivalent_hydrogen_groups",
]

#: Angles (radians) within this distance of 0 or pi count as near-collinear (10 degrees).
COLLINEAR_TOLERANCE = math.radians(10.0)


@dataclass(frozen=True)
class ZMatrix:
    """The placement order of the atoms and the partners that place each one.

    All arrays are integer arrays of shape ``(n_atoms,)`` aligned with :attr:`order`: row ``p``
    describes the atom ``order[p]``, placed ``p``-th. Missing partners are -1 (row 0 has none,
    row 1 only a bond partner, row 2 no torsion partner).

    Attributes:
        order: Atom indices (of the topology) in placement order.
        bond_partner: ``j``, bonded to the atom (for every row but the first).
        angle_partner: ``k``, the angle ``i-j-k`` (rows 2 onwards).
        torsion_partner: ``l``, the torsion ``i-j-k-l`` (rows 3 onwards).
        collinear: Atoms whose angle ``i-j-k`` or reference plane ``j-k-l`` is within
            :data:`COLLINEAR_TOLERANCE` of a straight line in the reference positions (empty
            when no positions were given). Their coordinates are ill-conditioned.
    """

    order: np.ndarray
    bond_partner: np.ndarray
    angle_partner: np.ndarray
    torsion_partner: np.ndarray
    collinear: tuple[int, ...] = ()

    @property
    def n_atoms(self) -> int:
        """Number of atoms N."""
        return len(self.order)

    @property
    def bonds(self) -> np.ndarray:
        """Atom pairs ``(i, j)`` of the N-1 bond lengths, shape ``(N-1, 2)``."""
        return np.stack([self.order[1:], self.bond_partner[1:]], axis=1)

    @property
    def angles(self) -> np.ndarray:
        """Atom triples ``(i, j, k)`` of the N-2 angles (vertex ``j``), shape ``(N-2, 3)``."""
        return np.stack([self.order[2:], self.bond_partner[2:], self.angle_partner[2:]], axis=1)

    @property
    def torsions(self) -> np.ndarray:
        """Atom quadruples ``(i, j, k, l)`` of the N-3 torsions, shape ``(N-3, 4)``."""
        return np.stack(
            [
                self.order[3:],
                self.bond_partner[3:],
                self.angle_partner[3:],
                self.torsion_partner[3:],
            ],
            axis=1,
        )


def bond_graph(topology: app.Topology) -> list[list[int]]:
    """Neighbour lists of the topology's bond graph (sorted atom indices)."""
    neighbours: list[set[int]] = [set() for _ in range(topology.getNumAtoms())]
    for bond in topology.bonds():
        i, j = bond[0].index, bond[1].index
        if i != j:
            neighbours[i].add(j)
            neighbours[j].add(i)
    return [sorted(n) for n in neighbours]


def _is_hydrogen(atom: app.Atom) -> bool:
    return atom.element is not None and atom.element.atomic_number == 1


def _distances_from(source: int, neighbours: list[list[int]]) -> list[int]:
    """Graph distances from ``source`` (-1 for unreachable atoms)."""
    distance = [-1] * len(neighbours)
    distance[source] = 0
    queue = deque([source])
    while queue:
        atom = queue.popleft()
        for other in neighbours[atom]:
            if distance[other] < 0:
                distance[other] = distance[atom] + 1
                queue.append(other)
    return distance


def _heavy_order(
    heavy: list[int], neighbours: list[list[int]]
) -> tuple[list[int], dict[int, int]]:
    """Heavy atoms depth-first along a breadth-first tree, backbone then longest branches first;
    and the parent of each in that tree."""
    members = set(heavy)
    graph = {a: [b for b in neighbours[a] if b in members] for a in heavy}
    root = next((a for a in heavy if len(graph[a]) == 1), heavy[0])
    parent: dict[int, int] = {}
    children: dict[int, list[int]] = {a: [] for a in heavy}
    visited, queue, bfs = {root}, deque([root]), []
    while queue:
        atom = queue.popleft()
        bfs.append(atom)
        for other in graph[atom]:
            if other not in visited:
                visited.add(other)
                parent[other] = atom
                children[atom].append(other)
                queue.append(other)
    if len(bfs) != len(heavy):
        raise BoltzgenError(
            f"{len(heavy) - len(bfs)} heavy atoms are not bonded (through heavy atoms) to atom "
            f"{root}: internal coordinates need one bonded molecule (remove ions/solvent, check "
            "the bonds)"
        )
    height = {a: 0 for a in heavy}
    for atom in reversed(bfs):
        if atom in parent:
            height[parent[atom]] = max(height[parent[atom]], height[atom] + 1)
    # the backbone: the tree path from the root to the last terminal heavy atom
    end = next((a for a in reversed(heavy) if len(graph[a]) == 1 and a != root), bfs[-1])
    backbone = {end}
    while end in parent:
        end = parent[end]
        backbone.add(end)
    order, stack = [], [root]
    while stack:
        atom = stack.pop()
        order.append(atom)
        stack += sorted(children[atom], key=lambda c: (c in backbone, height[c], -c))
    return order, parent


def _placement(
    topology: app.Topology, neighbours: list[list[int]]
) -> tuple[list[int], dict[int, int]]:
    """Placement order (heavy atoms, then hydrogens) and the parent (bond partner) of each atom."""
    atoms = list(topology.atoms())
    heavy = [a.index for a in atoms if not _is_hydrogen(a)] or [0]
    order, parent = _heavy_order(heavy, neighbours)
    placed = set(order)
    for atom in order:  # grows while iterating: hydrogens bonded to placed hydrogens follow
        for other in neighbours[atom]:
            if other not in placed:
                placed.add(other)
                parent[other] = atom
                order.append(other)
    if len(order) != len(atoms):
        raise BoltzgenError(
            f"{len(atoms) - len(order)} atoms are not bonded to the rest of the molecule: "
            "internal coordinates need one bonded molecule (remove ions/solvent, check the bonds)"
        )
    return order, parent


def _sine(vertex: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Sine of the angle a-vertex-b."""
    u, v = a - vertex, b - vertex
    return float(np.linalg.norm(np.cross(u, v)) / (np.linalg.norm(u) * np.linalg.norm(v)))


def build_zmatrix(
    topology: app.Topology, positions: np.ndarray | unit.Quantity | None = None
) -> ZMatrix:
    """Build a Z-matrix from a topology's bond graph.

    Arguments:
        topology: An OpenMM topology of one bonded molecule with at least 3 atoms.
        positions: Optional reference positions in nm, shape ``(N, 3)``; used to avoid
            near-collinear partner triples and to report those left.

    Returns:
        The :class:`ZMatrix`.

    Raises:
        BoltzgenError: Fewer than 3 atoms, atoms not bonded to the molecule, or positions of the
            wrong shape.
    """
    n_atoms = topology.getNumAtoms()
    if n_atoms < 3:
        raise BoltzgenError(f"a Z-matrix needs at least 3 atoms, the topology has {n_atoms}")
    xyz = None
    if positions is not None:
        if isinstance(positions, unit.Quantity):
            positions = positions.value_in_unit(unit.nanometer)
        xyz = np.asarray(positions, dtype=np.float64)
        if xyz.shape != (n_atoms, 3):
            raise BoltzgenError(f"positions must have shape ({n_atoms}, 3), got {xyz.shape}")
    neighbours = bond_graph(topology)
    order, parent = _placement(topology, neighbours)
    position = {atom: p for p, atom in enumerate(order)}
    rows = np.full((n_atoms, 3), -1, dtype=np.int64)
    collinear: list[int] = []
    for p, atom in enumerate(order[1:], start=1):
        placed = order[:p]
        j = parent[atom]
        rows[p, 0] = j
        if p == 1:
            continue
        distance = _distances_from(j, neighbours)
        k_candidates = sorted(
            (c for c in placed if c != j),
            key=lambda c: (distance[c], c != parent.get(j), position[c]),
        )

        def angle(c: int, j: int = j, atom: int = atom) -> float:
            return 1.0 if xyz is None else _sine(xyz[j], xyz[atom], xyz[c])

        k, ok = _first_fit(k_candidates, angle)
        rows[p, 1] = k
        if p >= 3:
            near_k = _distances_from(k, neighbours)
            l_candidates = sorted(
                (c for c in placed if c not in (j, k)),
                key=lambda c: (
                    0 if distance[c] == 1 else 1 if near_k[c] == 1 else 2,
                    c != parent.get(k),
                    distance[c] + near_k[c],
                    position[c],
                ),
            )

            def plane(c: int, j: int = j, k: int = k, distance: list[int] = distance) -> float:
                if xyz is None:
                    return 1.0
                vertex = xyz[j] if distance[c] == 1 else xyz[k]
                first, second = (xyz[k], xyz[c]) if distance[c] == 1 else (xyz[j], xyz[c])
                return _sine(vertex, first, second)

            rows[p, 2], plane_ok = _first_fit(l_candidates, plane)
            ok = ok and plane_ok
        if not ok:
            collinear.append(atom)
    return ZMatrix(
        order=np.asarray(order, dtype=np.int64),
        bond_partner=rows[:, 0],
        angle_partner=rows[:, 1],
        torsion_partner=rows[:, 2],
        collinear=tuple(collinear),
    )


def _first_fit(candidates: Sequence[int], sine: Callable[[int], float]) -> tuple[int, bool]:
    """The first candidate whose sine clears the collinearity tolerance, else the best one."""
    limit = math.sin(COLLINEAR_TOLERANCE)
    best, best_sine = candidates[0], -1.0
    for candidate in candidates:
        value = sine(candidate)
        if value >= limit:
            return candidate, True
        if value > best_sine:
            best, best_sine = candidate, value
    return best, False


def _graph_classes(topology: app.Topology, neighbours: list[list[int]]) -> list[int]:
    """Topological equivalence classes of the atoms (Morgan refinement of element and degree)."""
    atoms = list(topology.atoms())
    labels = [
        (a.element.atomic_number if a.element is not None else 0, len(neighbours[a.index]))
        for a in atoms
    ]
    classes = _rank(labels)
    while True:
        refined = _rank(
            [
                (classes[a], tuple(sorted(classes[b] for b in neighbours[a])))
                for a in range(len(atoms))
            ]
        )
        if len(set(refined)) == len(set(classes)):
            return refined
        classes = refined


def _rank(labels: list) -> list[int]:
    table = {label: rank for rank, label in enumerate(sorted(set(labels)))}
    return [table[label] for label in labels]


def find_stereocentres(topology: app.Topology) -> tuple[int, ...]:
    """Heavy atoms with four bonded substituents that are pairwise topologically distinct.

    Substituents are told apart by Morgan-refined graph classes (element, degree and the classes
    of their neighbours, iterated to convergence); pseudo-asymmetric centres, whose substituents
    differ only in stereochemistry, are not detected. The CA of every amino acid but glycine is
    one.

    Returns:
        Atom indices of the stereocentres, ascending.
    """
    neighbours = bond_graph(topology)
    classes = _graph_classes(topology, neighbours)
    return tuple(
        atom.index
        for atom in topology.atoms()
        if not _is_hydrogen(atom)
        and len(neighbours[atom.index]) == 4
        and len({classes[b] for b in neighbours[atom.index]}) == 4
    )


def equivalent_hydrogen_groups(topology: app.Topology) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """Groups of two or more hydrogens on one heavy atom (CH3, CH2, NH2, NH3+).

    Exchanging two hydrogens of a group leaves the energy unchanged but is not a motion the
    molecule can make; a flow must keep their order as in the reference structure.

    Returns:
        ``(centre, hydrogens)`` pairs, centres ascending, hydrogens ascending.
    """
    neighbours = bond_graph(topology)
    atoms = list(topology.atoms())
    groups = []
    for atom in atoms:
        if _is_hydrogen(atom):
            continue
        hydrogens = tuple(b for b in neighbours[atom.index] if _is_hydrogen(atoms[b]))
        if len(hydrogens) >= 2:
            groups.append((atom.index, hydrogens))
    return tuple(groups)
