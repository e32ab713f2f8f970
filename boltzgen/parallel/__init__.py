"""Scale-out on :mod:`torch.distributed` (launched by ``torchrun``): the process group, its
collectives on small tensors, per-rank random streams (:mod:`.group`), and the ``--nproc``
launcher (:mod:`.launch`)."""

from __future__ import annotations

from .group import (
    ProcessLost,
    World,
    all_gather_tensor,
    all_reduce_max,
    all_reduce_sum,
    all_to_all_rows,
    average_gradients,
    broadcast_module,
    broadcast_object,
    collective_failure,
    gather_objects,
    init_from_environment,
    peer_failure_text,
    rank_seed,
    read_on_rank_zero,
    shutdown,
    world,
)
from .launch import MAX_PROCESSES, launch_ranks, without_option

__all__ = [
    "World",
    "world",
    "init_from_environment",
    "shutdown",
    "all_reduce_sum",
    "all_reduce_max",
    "all_gather_tensor",
    "all_to_all_rows",
    "broadcast_object",
    "peer_failure_text",
    "read_on_rank_zero",
    "gather_objects",
    "rank_seed",
    "broadcast_module",
    "average_gradients",
    "collective_failure",
    "ProcessLost",
    "MAX_PROCESSES",
    "launch_ranks",
    "without_option",
]
