"""``boltzgen train ... --nproc K``: start the same command on K local ranks through torchrun's
launcher (:mod:`torch.distributed.launcher`), in this process.

The ranks report for themselves (rank 0 prints the summary, any rank its one-line error); the
launcher adds one line when a rank died without saying why (killed, crashed), instead of
torchrun's traceback of the failure record, and returns the failed rank's exit status.
"""

from __future__ import annotations

import logging
import sys
import uuid

__all__ = ["MAX_PROCESSES", "launch_ranks", "without_option"]

#: The most processes ``--nproc`` starts on one machine.
MAX_PROCESSES = 1024

#: Exit statuses with which a boltzgen command reports for itself (a user error, Ctrl-C).
_REPORTED = {1, 2, 130, 143}


def launch_ranks(nproc: int, arguments: list[str]) -> int:
    """Run ``python -m boltzgen ARGS`` on ``nproc`` ranks of this machine and wait.

    One node, a rendezvous on a free loopback port, no restarts (a failed rank ends the run;
    rerunning the command resumes from the last checkpoint).

    Returns:
        0 when every rank succeeded, else the exit status of the first rank that failed.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "boltzgen", *arguments)
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        status = failure.exitcode
        if status not in _REPORTED:
            how = f"signal {-status}" if status < 0 else f"exit status {status}"
            print(
                f"boltzgen: error: rank {rank} of {nproc} stopped ({how}); the others were "
                "stopped: rerun the same command to resume from the last checkpoint",
                file=sys.stderr,
            )
        return status if status > 0 else 1
    except KeyboardInterrupt:
        return 130
    return 0


def without_option(arguments: list[str], option: str) -> list[str]:
    """``arguments`` without ``option VALUE`` and ``option=VALUE`` (the command each rank of an
    ``--nproc`` launch runs is the user's command without ``--nproc K``)."""
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == option:
            skip = True
        elif not argument.startswith(f"{option}="):
            kept.append(argument)
    return kept
