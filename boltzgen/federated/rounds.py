"""Federated training of one autoregressive model by clients that hold data of different domains.

``[trainer] name = "federated"`` (:class:`FederationSettings`). Client k holds
``samples_per_client`` exact samples of domain k mod D, where domain d is the ``[target]`` table
with ``domains[d]``'s keys replaced (``domains = [{}, {h = -0.3}]``: the target itself and the
target at the opposite field). Each round:

1. every client starts from the global model and takes ``local_steps`` Adam steps (a fresh
   optimiser per round) on its own data: the negative log-likelihood, plus ``distill_weight``
   times the per-site ``divergence`` (``"forward"``, ``"reverse"`` or DKDR's ``"dkdr"``) to its
   teachers on the same data, averaged over the teachers. ``teachers = "none"`` is plain FedAvg,
   ``"global"`` distils from the round's starting global model, ``"experts"`` from the domain
   experts of the previous round's knowledge decoupling (the starting global model in the first
   round), as DKDR does;
2. the server (every rank, on the gathered client vectors) forms FedAvg's global model and the
   domain experts (:func:`~boltzgen.federated.aggregation.decouple`).

Randomness: client k's minibatches in round r come from a generator seeded by (seed, r, k) and
its data from one seeded by (seed, k), so the run is the same in one process and with the
clients spread over the ranks of a ``torchrun`` launch (``boltzgen federate --clients K``: one
client per rank). The checkpoint (``checkpoints/last.pt``) holds the global model, the experts
and the round, written at the end of every round: a killed or interrupted run resumes there.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from tqdm.auto import tqdm

from ..energy.base import Energy
from ..energy.exact import MAX_ENUMERATION_UNITS
from ..errors import BoltzgenError
from ..io import MetricsLog, checkpoint_exists, load_checkpoint, save_checkpoint
from ..parallel import all_gather_tensor, rank_seed, read_on_rank_zero, world
from ..trainers.distillation import class_logits, dkdr_loss, forward_kl, reverse_kl
from .aggregation import decouple, fedavg

__all__ = ["TEACHERS", "LOCAL_DIVERGENCES", "FederationSettings", "Federation"]

#: ``teachers`` values: whom the clients distil from during local training.
TEACHERS = ("none", "global", "experts")
#: ``divergence`` values: the per-site divergence of the local distillation term.
LOCAL_DIVERGENCES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "forward": forward_kl,
    "reverse": reverse_kl,
    "dkdr": dkdr_loss,
}
_STAGE = "federated"


@dataclasses.dataclass(frozen=True)
class FederationSettings:
    """The ``[trainer]`` table of ``name = "federated"``.

    Attributes:
        clients: Number of clients K (with ``torchrun``: a multiple of the number of ranks).
        domains: Per domain, the ``[target]`` keys it replaces (client k: domain k mod D).
        rounds: Communication rounds.
        local_steps: Adam steps of each client per round.
        batch_size: Samples of a client's data per local step.
        lr: Adam's learning rate.
        teachers: One of :data:`TEACHERS`.
        divergence: One of :data:`LOCAL_DIVERGENCES` (used unless ``teachers = "none"``).
        distill_weight: Weight of the distillation term against the log-likelihood.
        rank_fraction: Knowledge decoupling keeps max(1, floor(rank_fraction K)) singular
            directions of the normalised updates.
        samples_per_client: Exact samples of its domain that each client holds.
        progress: Show a progress bar over rounds.
    """

    clients: int = 4
    domains: list = dataclasses.field(default_factory=lambda: [{}])
    rounds: int = 20
    local_steps: int = 20
    batch_size: int = 128
    lr: float = 5e-3
    teachers: str = "experts"
    divergence: str = "dkdr"
    distill_weight: float = 1.0
    rank_fraction: float = 0.2
    samples_per_client: int = 2000
    progress: bool = True

    def __post_init__(self) -> None:
        positive = ("clients", "rounds", "local_steps", "batch_size", "samples_per_client")
        for key in positive:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BoltzgenError(f"[trainer] {key} = {value!r} must be an integer >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BoltzgenError(f"[trainer] lr = {self.lr!r} must be a number > 0")
        if not (self.distill_weight >= 0 and math.isfinite(self.distill_weight)):
            raise BoltzgenError(
                f"[trainer] distill_weight = {self.distill_weight!r} must be a number >= 0"
            )
        if not 0 < self.rank_fraction <= 1:
            raise BoltzgenError(f"[trainer] rank_fraction = {self.rank_fraction!r}: need (0, 1]")
        if self.teachers not in TEACHERS:
            raise BoltzgenError(
                f"[trainer] teachers = {self.teachers!r}; choose one of: {', '.join(TEACHERS)}"
            )
        if self.divergence not in LOCAL_DIVERGENCES:
            raise BoltzgenError(
                f"[trainer] divergence = {self.divergence!r}; choose one of: "
                f"{', '.join(LOCAL_DIVERGENCES)}"
            )
        if not self.domains or not all(isinstance(d, dict) for d in self.domains):
            raise BoltzgenError(
                "[trainer] domains must be a list of tables of [target] keys, e.g. "
                "domains = [{}, {h = -0.3}]"
            )
        if len(self.domains) > self.clients:
            raise BoltzgenError(
                f"[trainer] {len(self.domains)} domains need at least as many clients "
                f"(clients = {self.clients})"
            )

    @classmethod
    def config_keys(cls) -> dict[str, tuple[Any, str]]:
        """Key -> (default, annotation text), as the registry reads a table's schema."""
        keys = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = inspect.Parameter.empty
            keys[f.name] = (default, str(f.type))
        return keys

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FederationSettings:
        """Settings from a resolved ``[trainer]`` table (its ``name`` ignored)."""
        return cls(**{k: v for k, v in params.items() if k != "name"})

    def to_params(self) -> dict[str, Any]:
        """The flat table of these settings."""
        return dataclasses.asdict(self)

    def without_progress(self) -> FederationSettings:
        """A copy with the progress bar off."""
        return dataclasses.replace(self, progress=False)


class Federation:
    """Federated rounds of one autoregressive model (the :mod:`module docstring <.rounds>`).

    Arguments:
        model: The global model (an autoregressive model with ``conditional_logits``); it
            holds the global parameters after :meth:`fit`.
        domains: The D domain targets (discrete, enumerable for the exact metrics).
        settings: The federation's settings.
        seed: The run's seed (data and minibatches derive from it).
        run_dir: Where ``metrics.csv`` and ``checkpoints/last.pt`` go (``None``: nothing on
            disk, no resume).

    After :meth:`fit`, like a :class:`~boltzgen.trainers.Trainer`: ``step`` (rounds done),
    ``wall_time_s``, ``energy_evaluations`` (0: the clients learn from data), ``skipped`` (0),
    ``temperature`` (``None``); :meth:`summary_metrics` gives the final exact KLs per domain.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        domains: Sequence[Energy],
        settings: FederationSettings,
        seed: int = 0,
        run_dir: str | Path | None = None,
    ) -> None:
        if not hasattr(model, "conditional_logits") or getattr(model, "z2", False):
            raise BoltzgenError(
                f"[model] {type(model).__name__} cannot be federated: use an autoregressive "
                "model (made, pixelcnn) without z2"
            )
        self.world = world()
        if settings.clients % self.world.size:
            raise BoltzgenError(
                f"[trainer] clients = {settings.clients} do not split over {self.world.size} "
                "processes: use a multiple of the process count"
            )
        self.model = model
        self.domains = list(domains)
        self.settings = settings
        self.seed = int(seed)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.temperature: float | None = None
        self.energy_evaluations = 0
        self.skipped = 0
        self.step = 0
        self.wall_time_s = 0.0
        reference = next(model.parameters())
        per_rank = settings.clients // self.world.size
        self.local_clients = range(self.world.rank * per_rank, (self.world.rank + 1) * per_rank)
        self.data = {k: self._client_data(k, reference) for k in self.local_clients}
        self.sizes = torch.full((settings.clients,), float(settings.samples_per_client))
        self.experts: Tensor | None = None  # (C, P) of the last round
        self._exact = self._domain_log_probs()

    # ------------------------------------------------------------------ data and metrics
    def domain_of(self, client: int) -> int:
        """The domain index of client ``client``."""
        return client % len(self.domains)

    def _client_data(self, client: int, reference: Tensor) -> Tensor:
        domain = self.domains[self.domain_of(client)]
        generator = torch.Generator(device=reference.device)
        generator.manual_seed(rank_seed(self.seed, client))
        states = domain.exact().sample(self.settings.samples_per_client, generator)
        return states.to(reference.device, reference.dtype)

    def _domain_log_probs(self) -> Tensor | None:
        """log p of every state ``(D + 1, S)`` (float64): each domain's, then their mixture
        weighted by the clients' data; ``None`` when the domains are too large to enumerate."""
        if any(domain.dim > MAX_ENUMERATION_UNITS for domain in self.domains):
            return None
        log_p = torch.stack([domain.exact().log_prob.double() for domain in self.domains])
        clients = torch.tensor([self.domain_of(k) for k in range(self.settings.clients)])
        share = torch.bincount(clients, minlength=len(self.domains)).double()
        pooled = torch.logsumexp(log_p + (share / share.sum()).log().to(log_p)[:, None], dim=0)
        return torch.cat([log_p, pooled[None]])

    def exact_kls(self) -> dict[str, float]:
        """KL(p_d || q) of the global model for each domain d (``kl_domain_d``) and for their
        pooled mixture, weighted by the clients' data (``kl_pooled``), by enumeration; empty
        when the domains are too large to enumerate."""
        if self._exact is None:
            return {}
        with torch.no_grad():
            log_q = self.model.exact().log_prob.to(self._exact)
        kls = (self._exact.exp() * (self._exact - log_q)).sum(dim=1).tolist()
        names = [f"kl_domain_{d}" for d in range(len(self.domains))] + ["kl_pooled"]
        return dict(zip(names, kls))

    def kl_floors(self) -> dict[str, float]:
        """KL(p_d || p_pooled) per domain (``kl_floor_domain_d``): the least KL(p_d || q) a
        single model q of the pooled distribution has; empty when not enumerable."""
        if self._exact is None:
            return {}
        pooled = self._exact[-1]
        kls = (self._exact[:-1].exp() * (self._exact[:-1] - pooled)).sum(dim=1).tolist()
        return {f"kl_floor_domain_{d}": kl for d, kl in enumerate(kls)}

    def summary_metrics(self) -> dict[str, Any]:
        """For ``summary.json``: the exact KLs of the final global model (:meth:`exact_kls`),
        their floors (:meth:`kl_floors`), the rounds and the number of domain experts of the
        last round."""
        metrics: dict[str, Any] = {"rounds": self.step, **self.exact_kls(), **self.kl_floors()}
        if self.experts is not None:
            metrics["domain_experts"] = int(self.experts.shape[0])
        return metrics

    # ------------------------------------------------------------------ one round
    def _teachers(self, start: Tensor) -> list[torch.nn.Module]:
        s = self.settings
        if s.teachers == "none" or s.distill_weight == 0:
            return []
        vectors = [start] if s.teachers == "global" or self.experts is None else self.experts
        teachers = []
        for vector in vectors:
            teacher = copy.deepcopy(self.model)
            vector_to_parameters(vector.clone(), teacher.parameters())
            teachers.append(teacher.eval().requires_grad_(False))
        return teachers

    def _local_update(
        self, client: int, start: Tensor, teachers: list[torch.nn.Module], round_index: int
    ) -> tuple[Tensor, Tensor]:
        """Client ``client``'s local training from ``start``: its final parameter vector and
        its mean loss ``(2,)`` (log-likelihood part, distillation part)."""
        s = self.settings
        vector_to_parameters(start.clone(), self.model.parameters())  # it aliases the vector
        self.model.train()
        optimizer = torch.optim.Adam(self.model.parameters(), lr=s.lr)
        data = self.data[client]
        generator = torch.Generator(device=data.device)
        generator.manual_seed(rank_seed(rank_seed(self.seed, round_index), client))
        divergence = LOCAL_DIVERGENCES[s.divergence]
        totals = torch.zeros(2, dtype=torch.float64, device=data.device)
        for _ in range(s.local_steps):
            rows = torch.randint(
                len(data), (s.batch_size,), device=data.device, generator=generator
            )
            x = data[rows]
            nll = -self.model.log_prob(x).mean()
            distill = torch.zeros((), dtype=nll.dtype, device=nll.device)
            if teachers:
                student_logits = class_logits(self.model, x)
                for teacher in teachers:
                    with torch.no_grad():
                        teacher_logits = class_logits(teacher, x)
                    distill = distill + divergence(teacher_logits, student_logits).sum(-1).mean()
                distill = distill / len(teachers)
            loss = nll + s.distill_weight * distill
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            totals += torch.stack([nll.detach(), distill.detach()]).double()
        return parameters_to_vector(self.model.parameters()).detach(), totals / s.local_steps

    def _round(self, round_index: int) -> dict[str, float]:
        start = parameters_to_vector(self.model.parameters()).detach().clone()
        teachers = self._teachers(start)
        results = [self._local_update(k, start, teachers, round_index) for k in self.local_clients]
        states = all_gather_tensor(torch.stack([v for v, _ in results])).flatten(0, 1)
        losses = all_gather_tensor(torch.stack([l for _, l in results])).flatten(0, 1)
        states64 = states.to(torch.float64)
        clusters, experts = decouple(
            states64, self.sizes, start.double(), self.settings.rank_fraction
        )
        self.experts = experts.to(start.dtype)
        vector_to_parameters(fedavg(states64, self.sizes).to(start.dtype), self.model.parameters())
        return {
            "nll": float(losses[:, 0].mean()),
            "distill": float(losses[:, 1].mean()),
            "domain_experts": float(len(clusters)),
            **self.exact_kls(),
        }

    # ------------------------------------------------------------------ the run
    @property
    def _checkpoint(self) -> Path | None:
        return self.run_dir / "checkpoints" / "last.pt" if self.run_dir is not None else None

    def _resume(self) -> None:
        path = self._checkpoint
        if path is None or not checkpoint_exists(path):
            return
        device = next(self.model.parameters()).device
        state = read_on_rank_zero(lambda: load_checkpoint(path, device, kind="federation"))
        self.model.load_state_dict(state["model"])
        self.experts = state["experts"] if state["experts"].numel() else None
        self.step = int(state["round"])
        self.wall_time_s = float(state["wall_time_s"])
        MetricsLog(self.run_dir / "metrics.csv").truncate_after(self.step, _STAGE)

    def _save(self) -> None:
        if self._checkpoint is None or not self.world.is_main:
            return
        self._checkpoint.parent.mkdir(parents=True, exist_ok=True)
        experts = self.experts if self.experts is not None else torch.zeros(0)
        state = {
            "stage": _STAGE,
            "round": self.step,
            "model": self.model.state_dict(),
            "experts": experts,
            "wall_time_s": self.wall_time_s,
        }
        save_checkpoint(self._checkpoint, state)

    def fit(self) -> dict[str, float]:
        """Run the remaining rounds; the last round's metrics."""
        self._resume()
        log = MetricsLog(self.run_dir / "metrics.csv") if self.run_dir is not None else None
        bar = tqdm(
            total=self.settings.rounds,
            initial=self.step,
            unit="round",
            desc=_STAGE,
            disable=not (self.settings.progress and self.world.is_main),
            dynamic_ncols=True,
            mininterval=1.0,
        )
        metrics: dict[str, float] = {}
        try:
            while self.step < self.settings.rounds:
                started = time.perf_counter()
                metrics = self._round(self.step)
                self.step += 1
                self.wall_time_s += time.perf_counter() - started
                if log is not None and self.world.is_main:
                    log.append({"stage": _STAGE, "step": self.step, **metrics})
                self._save()
                bar.update(1)
                bar.set_postfix(
                    nll=f"{metrics['nll']:.4g}", experts=int(metrics["domain_experts"])
                )
        finally:
            bar.close()
        return {"loss": metrics.get("nll", math.nan), **metrics}
