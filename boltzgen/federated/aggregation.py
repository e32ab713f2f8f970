"""The server's side of a federated round: FedAvg and DKDR's knowledge decoupling.

Client models travel as flat parameter vectors (:func:`torch.nn.utils.parameters_to_vector`),
stacked into ``(K, P)`` for K clients; everything here is deterministic and computed in float64
on whatever device the vectors are on, so every rank of a distributed run reaches the same
result from the same gathered vectors.

Knowledge decoupling (Yuan et al., "DKDR", NeurIPS 2025): the clients' updates
theta_k - theta_global are normalised to unit length, reduced to their best rank-r
approximation (truncated SVD, r = max(1, floor(rank_fraction K))), and clustered by FINCH's
first partition (Sarfraz et al., CVPR 2019) on cosine similarity; the data-size-weighted average
of each cluster's models is that cluster's *domain expert*.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import BoltzgenError

__all__ = [
    "fedavg",
    "normalized_updates",
    "low_rank",
    "finch_first_partition",
    "domain_experts",
    "decouple",
]


def _weights(sizes: Tensor, count: int) -> Tensor:
    sizes = torch.as_tensor(sizes, dtype=torch.float64)
    if sizes.shape != (count,) or not bool((sizes > 0).all()):
        raise BoltzgenError(f"need one positive data size per client ({count}), got {sizes}")
    return sizes / sizes.sum()


def fedavg(states: Tensor, sizes: Tensor) -> Tensor:
    """FedAvg: the data-size-weighted mean ``(P,)`` of the client vectors ``states`` ``(K, P)``
    with data sizes ``sizes`` ``(K,)``."""
    weights = _weights(sizes, states.shape[0]).to(states.device, states.dtype)
    return weights @ states


def normalized_updates(states: Tensor, reference: Tensor) -> Tensor:
    """The updates ``states - reference`` ``(K, P)``, each divided by its Euclidean norm (an
    update of norm zero stays zero)."""
    updates = (states - reference).to(torch.float64)
    return updates / updates.norm(dim=1, keepdim=True).clamp_min(1e-12)


def low_rank(updates: Tensor, rank_fraction: float = 0.2) -> Tensor:
    """The best rank-r approximation ``(K, P)`` of ``updates`` (truncated SVD), r =
    max(1, floor(rank_fraction K))."""
    if not 0.0 < rank_fraction <= 1.0:
        raise BoltzgenError(f"rank_fraction must be in (0, 1], got {rank_fraction!r}")
    u, s, vh = torch.linalg.svd(updates, full_matrices=False)
    rank = max(1, int(rank_fraction * updates.shape[0]))
    return (u[:, :rank] * s[:rank]) @ vh[:rank]


def finch_first_partition(vectors: Tensor) -> list[list[int]]:
    """FINCH's first partition of the rows of ``vectors`` ``(K, D)``: link every row to its
    first neighbour (largest cosine similarity, itself excluded; the first of ties); rows i and j
    are in one cluster when j is i's first neighbour, i is j's, or both have the same first
    neighbour; clusters are the connected components, each a sorted list of row indices, ordered
    by their smallest index. One row is one cluster."""
    count = vectors.shape[0]
    if count < 2:
        return [list(range(count))]
    unit = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-torch.inf)
    first = similarity.argmax(dim=1).tolist()
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in enumerate(first):  # rows sharing a first neighbour are both linked to it
        parent[root(i)] = root(j)
    clusters: dict[int, list[int]] = {}
    for i in range(count):
        clusters.setdefault(root(i), []).append(i)
    return sorted(clusters.values())


def domain_experts(states: Tensor, sizes: Tensor, clusters: list[list[int]]) -> Tensor:
    """The data-size-weighted mean of each cluster's client vectors: ``(C, P)``."""
    sizes = torch.as_tensor(sizes, dtype=torch.float64)
    return torch.stack([fedavg(states[members], sizes[members]) for members in clusters])


def decouple(
    states: Tensor, sizes: Tensor, reference: Tensor, rank_fraction: float = 0.2
) -> tuple[list[list[int]], Tensor]:
    """DKDR's knowledge decoupling of one round: the clusters of the clients' normalised,
    low-rank updates against ``reference`` (the round's starting global vector ``(P,)``) and the
    domain experts ``(C, P)``."""
    updates = low_rank(normalized_updates(states, reference), rank_fraction)
    clusters = finch_first_partition(updates)
    return clusters, domain_experts(states, sizes, clusters)
