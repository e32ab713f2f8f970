"""The process group of a ``torchrun`` launch, seen from one rank.

``torchrun --nproc_per_node K -m boltzgen ...`` starts K processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment;
:func:`init_from_environment` joins them into one :mod:`torch.distributed` group (gloo on the
CPU, NCCL on CUDA, one process per device). Without those variables, or with one process,
nothing is initialised and every collective here is the identity, so single-process code paths
are the same code.

Collectives are sums of small tensors (gradients, a few diagnostics); Python objects are
broadcast or gathered only at checkpoints and at start-up, never inside a step.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..errors import BoltzgenError, first_line

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
    "read_on_rank_zero",
    "peer_failure_text",
    "gather_objects",
    "rank_seed",
    "broadcast_module",
    "average_gradients",
    "collective_failure",
    "ProcessLost",
]

#: How long a collective waits for a rank that does not answer before failing (a dead peer is
#: usually noticed at once, from the closed connection; this bounds the rest).
TIMEOUT = datetime.timedelta(seconds=60)


@dataclasses.dataclass(frozen=True)
class World:
    """Where this process stands in the group.

    Attributes:
        rank: This process's rank, ``0 <= rank < size``.
        size: Number of processes (1 without ``torchrun``).
        local_rank: Rank on this node (selects the CUDA device).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.size > 1


def world() -> World:
    """This process's :class:`World` (rank 0 of 1 when no group is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    )


def init_from_environment(device: torch.device) -> tuple[World, torch.device]:
    """Join the ``torchrun`` group described by the environment, if there is one.

    Arguments:
        device: The device the config asked for; on CUDA each rank takes ``cuda:LOCAL_RANK``.

    Returns:
        ``(world, device)``: this rank's place and the device it computes on.

    Raises:
        BoltzgenError: The environment names a group that cannot be joined, or more ranks on
            a node than it has CUDA devices.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        return world(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise BoltzgenError(
                f"local rank {local_rank} has no CUDA device ({torch.cuda.device_count()} on "
                "this node): start at most that many processes per node (--nproc_per_node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
    except (RuntimeError, ValueError) as error:
        raise BoltzgenError(
            f"cannot join the torch.distributed group ({backend}, WORLD_SIZE={size}): "
            f"{str(error).splitlines()[0]}; launch with torchrun"
        ) from None
    return world(), device


def shutdown(together: bool = False) -> None:
    """Leave the group (no-op without one). ``together`` (after work that succeeded on every
    rank): wait for all ranks first, so that no rank leaves, and its launcher closes the
    rendezvous store, while another still tears its group down (seen as an abort of a
    finishing rank of a two-node launch)."""
    if dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place (identity on one process); returns it."""
    if world().distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """The elementwise maximum of ``tensor`` over all ranks, in place (identity on one
    process); returns it."""
    if world().distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_gather_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` (the same shape on every rank) stacked in rank order: shape
    ``(size, *tensor.shape)`` (``(1, ...)`` on one process)."""
    if not world().distributed:
        return tensor.unsqueeze(0)
    parts = [torch.empty_like(tensor) for _ in range(world().size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.stack(parts)


def all_to_all_rows(
    rows: torch.Tensor, send_counts: list[int], receive_counts: list[int]
) -> torch.Tensor:
    """Exchange blocks of rows: this rank sends ``rows[offset_d : offset_d + send_counts[d]]``
    to rank d (blocks in rank order) and receives ``receive_counts[s]`` rows from each rank s.

    Arguments:
        rows: Shape ``(sum(send_counts), *row_shape)``.
        send_counts: Rows for each destination rank, length ``size``.
        receive_counts: Rows from each source rank, length ``size``.

    Returns:
        Shape ``(sum(receive_counts), *row_shape)``, the blocks in source-rank order (``rows``
        itself on one process).
    """
    if not world().distributed:
        return rows
    flat = rows.reshape(rows.shape[0], -1).contiguous()
    received = flat.new_empty((sum(receive_counts), flat.shape[1]))
    dist.all_to_all_single(
        received, flat, output_split_sizes=receive_counts, input_split_sizes=send_counts
    )
    return received.reshape(-1, *rows.shape[1:])


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (picklable; start-up and checkpoints only)."""
    if not world().distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


_Value = TypeVar("_Value")


def read_on_rank_zero(read: Callable[[], _Value]) -> _Value:
    """``read()`` on rank 0 (the run folder may exist on its node only), its result broadcast
    to the other ranks (picklable; start-up and checkpoints only); a :class:`BoltzgenError`
    that ``read`` raises is raised on every rank. On one process: ``read()``."""
    if not world().distributed:
        return read()
    value = error = None
    if world().is_main:
        try:
            value = read()
        except BoltzgenError as failure:
            error = str(failure)
    value, error = broadcast_object((value, error))
    if error is not None:
        raise BoltzgenError(error)
    return value


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (checkpoints only)."""
    if not world().distributed:
        return [value]
    values: list[Any] = [None] * world().size
    dist.all_gather_object(values, value)
    return values


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random stream in a run seeded with ``seed``: rank 0 keeps
    ``seed`` (so one process draws what it always drew); other ranks get a 63-bit hash of
    ``(seed, rank)``, independent of the launch."""
    if rank == 0:
        return int(seed)
    digest = hashlib.sha256(f"boltzgen-rank:{int(seed)}:{int(rank)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (no-op on one process)."""
    if not world().distributed:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor, src=0)


def average_gradients(parameters: list[torch.nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
    """Average the gradients of ``parameters`` and the detached ``loss`` over all ranks.

    One all-reduce of one flat buffer (all gradients and the loss), written back into ``.grad``
    (a parameter without a gradient gets the average of zeros and the others' gradients), so
    every rank takes the same optimiser step. No host synchronisation on CUDA (NCCL runs on the
    stream). On one process: nothing is communicated, ``loss.detach()`` is returned.

    Returns:
        The loss averaged over ranks (0-d, detached).
    """
    loss = loss.detach()
    if not world().distributed:
        return loss
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([loss.reshape(1).to(grads[0].dtype), *(g.reshape(-1) for g in grads)])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world().size
    offset = 1
    for parameter, grad in zip(parameters, grads):
        parameter.grad = flat[offset : offset + grad.numel()].view_as(grad)
        offset += grad.numel()
    return flat[0].to(loss.dtype)


#: Words in the message of a collective that failed because a peer went away (gloo and NCCL
#: raise plain ``RuntimeError``s; :class:`torch.distributed.DistError` where they are typed).
_PEER_FAILURE_WORDS = ("connection", "gloo", "nccl", "timed out", "timeout", "broken pipe")


def collective_failure(error: BaseException) -> bool:
    """Whether ``error`` is a collective that failed because another rank died or hung."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error).lower()
    return any(word in text for word in _PEER_FAILURE_WORDS)


class ProcessLost(BoltzgenError):
    """A run on several processes stopped: a collective failed because another rank died."""


def peer_failure_text(error: BaseException) -> str:
    """The first line of a failed collective's error without the backend's ``[file.cc:line]``
    prefix, shortened to 100 characters (for a one-line :class:`ProcessLost` message)."""
    text = first_line(error)
    if text.startswith("["):
        text = text.split("]", 1)[-1].strip()
    return text[:100]
