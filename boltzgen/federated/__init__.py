"""Federated learning of autoregressive models over domains: FedAvg and DKDR's knowledge
decoupling on the server (:mod:`.aggregation`), local training with distillation from domain
experts on the clients, in one process or one client per ``torchrun`` rank (:mod:`.rounds`)."""

from __future__ import annotations

from .aggregation import decouple, domain_experts, fedavg, finch_first_partition, low_rank
from .rounds import LOCAL_DIVERGENCES, TEACHERS, Federation, FederationSettings

__all__ = [
    "fedavg",
    "finch_first_partition",
    "low_rank",
    "domain_experts",
    "decouple",
    "Federation",
    "FederationSettings",
    "TEACHERS",
    "LOCAL_DIVERGENCES",
]
