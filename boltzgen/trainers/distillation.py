r"""Knowledge distillation of a normalized discrete teacher into an autoregressive student.

Divergences of categorical conditionals (pure functions of logits of shape ``(..., K)``, reduced
over the last axis; ``p`` is the teacher, ``q`` the student):

- :func:`forward_kl` KL(p||q) and :func:`reverse_kl` KL(q||p);
- skewed KLs (DistiLLM, Ko et al. 2024) with mixtures by logsumexp:
  :func:`skew_forward_kl` KL(p || lam p + (1 - lam) q) and
  :func:`skew_reverse_kl` KL(q || (1 - lam) p + lam q); both equal the plain KL at lam = 0;
- DKDR's dynamic mix (Yuan et al., NeurIPS 2025): :func:`dkdr_weights` and :func:`dkdr_loss`
  = g_F KL(p||q) + g_R KL(q||p) with detached weights.

The objective :class:`Distill` trains an autoregressive student (:class:`~boltzgen.models.MADE`,
:class:`~boltzgen.models.PixelCNN`) from a frozen teacher with one of :data:`DIVERGENCES`:

- ``"forward"``: maximum likelihood on fresh teacher samples, -mean log q(x), x ~ p; its
  gradient is unbiased for grad KL(p||q);
- ``"reverse"``: the score-function estimator of grad KL(q||p) on exact student samples with the
  teacher's log p (both normalized: no energy, no log Z), leave-one-out baseline (unbiased);
- ``"skew-forward"``, ``"dkdr"``: the per-site divergence summed over sites on teacher samples,
  J = E_{x~p} sum_i D(p(.|x_<i), q(.|x_<i)); pathwise, unbiased;
- ``"skew-reverse"``: the per-site divergence on student samples, J = E_{y~q} sum_i
  D(p(.|y_<i), q(.|y_<i)); gradient = pathwise part + score-function part with the reward to go
  R_j = sum_{i>j} D_i (D_i depends on y_<i only) and a leave-one-out baseline (unbiased);
- ``"minillm"``: KL(q||p) by MiniLLM's estimator (:func:`minillm_surrogate`): single-step part
  + long-term policy gradient, on teacher-mixed samples (:func:`teacher_mixed_sample`) with
  exact prefix weights (unbiased) or the paper's per-token weights.

By the chain rule the site sums are sequence-level divergences where the divergence is a KL:
at lam = 0 the skew-forward objective is KL(p||q) and the skew-reverse one KL(q||p). For binary
units (K = 2) DKDR's head is always the teacher's top class alone and e_1 = e_2, so
g_F = g_R = 1/2: the symmetric (Jeffreys) KL / 2; with K-state (categorical) units the weights
move. Every divergence works on two-state and K-state units alike: the per-site conditionals
are handled as class logits ``(B, N, K)`` (:func:`class_logits`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import BoltzgenError
from ..models.autoregressive import sample_site_mixture
from ..samplers.weights import reverse_ess

__all__ = [
    "DIVERGENCES",
    "forward_kl",
    "reverse_kl",
    "skew_forward_kl",
    "skew_reverse_kl",
    "dkdr_weights",
    "dkdr_loss",
    "binary_logits",
    "class_logits",
    "site_divergence",
    "leave_one_out",
    "PREFIX_WEIGHTS",
    "TeacherSamples",
    "TeacherObjective",
    "teacher_mixed_sample",
    "minillm_surrogate",
    "Distill",
]

#: ``[trainer] divergence`` values of ``name = "distill"``.
DIVERGENCES = ("forward", "reverse", "skew-forward", "skew-reverse", "dkdr", "minillm")
#: The divergences evaluated on the per-site conditionals (they need ``conditional_logits``).
_SITE_DIVERGENCES = ("skew-forward", "skew-reverse", "dkdr", "minillm")
#: ``prefix_weights`` of MiniLLM's teacher-mixed sampling.
PREFIX_WEIGHTS = ("exact", "per-token")


def _kl_from_log(log_a: Tensor, log_b: Tensor) -> Tensor:
    """sum_k a_k (log a_k - log b_k) over the last axis, with 0 log 0 = 0 (shape ``(...,)``)."""
    a = log_a.exp()
    terms = torch.where(a > 0, a * (log_a - log_b), torch.zeros_like(a))
    return terms.sum(-1)


def forward_kl(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """KL(p||q) of the categoricals softmax(teacher_logits), softmax(student_logits):
    ``(..., K)`` -> ``(...,)``."""
    return _kl_from_log(teacher_logits.log_softmax(-1), student_logits.log_softmax(-1))


def reverse_kl(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """KL(q||p): ``(..., K)`` -> ``(...,)``."""
    return _kl_from_log(student_logits.log_softmax(-1), teacher_logits.log_softmax(-1))


def check_lambda(lam: float) -> None:
    """Refuse a skew lambda outside [0, 1) with one line."""
    if not 0.0 <= lam < 1.0:
        raise BoltzgenError(f"the skew lambda must be in [0, 1), got {lam!r}")


def log_mixture(log_a: Tensor, log_b: Tensor, lam: float) -> Tensor:
    """log(lam a + (1 - lam) b) by logsumexp (lam in [0, 1))."""
    if lam == 0.0:
        return log_b
    return torch.logaddexp(math.log(lam) + log_a, math.log1p(-lam) + log_b)


def skew_forward_kl(teacher_logits: Tensor, student_logits: Tensor, lam: float = 0.1) -> Tensor:
    """KL(p || lam p + (1 - lam) q): ``(..., K)`` -> ``(...,)``; lam in [0, 1)."""
    check_lambda(lam)
    log_p, log_q = teacher_logits.log_softmax(-1), student_logits.log_softmax(-1)
    return _kl_from_log(log_p, log_mixture(log_p, log_q, lam))


def skew_reverse_kl(teacher_logits: Tensor, student_logits: Tensor, lam: float = 0.1) -> Tensor:
    """KL(q || (1 - lam) p + lam q): ``(..., K)`` -> ``(...,)``; lam in [0, 1)."""
    check_lambda(lam)
    log_p, log_q = teacher_logits.log_softmax(-1), student_logits.log_softmax(-1)
    return _kl_from_log(log_q, log_mixture(log_q, log_p, lam))


def dkdr_weights(teacher_probs: Tensor, student_probs: Tensor) -> tuple[Tensor, Tensor]:
    """DKDR's dynamic weights (g_F, g_R), each ``(...,)``, from probabilities ``(..., K)``.

    Per position the teacher's probabilities are sorted in descending order (a stable sort:
    tied classes keep their index order), e_k = |p(k) - q(k)| in that order; the head is the
    classes whose teacher cumulative mass is <= 0.5, the top class always included; g_F is the
    head's share of sum_k e_k, g_R = 1 - g_F the tail's; both 0.5 where the error is zero.
    Detached; no host synchronisation.
    """
    p, q = teacher_probs.detach(), student_probs.detach()
    order = torch.sort(p, dim=-1, descending=True, stable=True).indices
    p_sorted = p.gather(-1, order)
    error = (p_sorted - q.gather(-1, order)).abs()
    head = p_sorted.cumsum(-1) <= 0.5
    head[..., 0] = True
    total = error.sum(-1)
    head_error = torch.where(head, error, torch.zeros_like(error)).sum(-1)
    positive = total > 0
    g_forward = torch.where(
        positive, head_error / torch.where(positive, total, torch.ones_like(total)), 0.5
    )
    return g_forward, 1.0 - g_forward


def dkdr_loss(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """g_F KL(p||q) + g_R KL(q||p) with the detached :func:`dkdr_weights`: ``(..., K)`` ->
    ``(...,)`` (the caller takes the batch mean)."""
    g_forward, g_reverse = dkdr_weights(teacher_logits.softmax(-1), student_logits.softmax(-1))
    return g_forward * forward_kl(teacher_logits, student_logits) + g_reverse * reverse_kl(
        teacher_logits, student_logits
    )


def binary_logits(logits: Tensor) -> Tensor:
    """Class logits ``(..., 2)`` = (0, l) of a binary conditional with logit l = log q(+1)/q(-1)
    (class 0: -1 or 0, class 1: +1 or 1)."""
    return torch.stack([torch.zeros_like(logits), logits], -1)


def class_logits(model: torch.nn.Module, x: Tensor) -> Tensor:
    """Class logits ``(B, N, K)`` of an autoregressive model's conditionals at states ``(B, N)``:
    K = 2 (:func:`binary_logits`, class 1 = +1 or 1) for two-state units, the model's K logits
    for categorical ones."""
    logits = model.conditional_logits(x)
    return logits if getattr(model, "categorical", False) else binary_logits(logits)


def _class_index(model: torch.nn.Module, x: Tensor) -> Tensor:
    """The class of each unit ``(B, N)``, long: 0/1 for two-state units, the level for K."""
    if getattr(model, "categorical", False):
        return x.long()
    return (x > 0).long() if model.spin else x.long()


def site_divergence(
    divergence: str, teacher_logits: Tensor, student_logits: Tensor, lam: float = 0.1
) -> Tensor:
    """The per-site divergence ``divergence`` (one of ``"skew-forward"``, ``"skew-reverse"``,
    ``"dkdr"``) of the conditionals given as class logits ``(B, N, K)``
    (:func:`class_logits`): ``(B, N)``."""
    p, q = teacher_logits, student_logits
    if divergence == "skew-forward":
        return skew_forward_kl(p, q, lam)
    if divergence == "skew-reverse":
        return skew_reverse_kl(p, q, lam)
    if divergence == "dkdr":
        return dkdr_loss(p, q)
    raise BoltzgenError(
        f"no per-site divergence {divergence!r}; choose one of: {', '.join(_SITE_DIVERGENCES)}"
    )


def leave_one_out(values: Tensor) -> Tensor:
    """Per row, the mean of the other rows (``values`` ``(B, ...)``, B >= 2): the unbiased
    baseline of a score-function estimator."""
    return (values.sum(0, keepdim=True) - values) / (values.shape[0] - 1)


def _site_log_probs(model: torch.nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Class logits ``(B, N, K)`` of an autoregressive model and log q(x_i | x_<i) ``(B, N)``."""
    logits = class_logits(model, x)
    chosen = logits.log_softmax(-1).gather(-1, _class_index(model, x)[..., None])
    return logits, chosen[..., 0]


def teacher_mixed_sample(
    teacher: torch.nn.Module, student: torch.nn.Module, n: int, alpha: float
) -> Tensor:
    """``n`` states ``(n, N)`` drawn site by site from p~_i = alpha p_i + (1 - alpha) q_i, the
    mixture of the teacher's and the student's conditionals (MiniLLM's teacher-mixed sampling;
    alpha = 0: exact student samples), with the cached site passes of both models
    (:func:`~boltzgen.models.autoregressive.sample_site_mixture`; torch's global generator, no
    host synchronisation)."""
    if alpha == 0.0:
        return student.sample(n)
    return sample_site_mixture(teacher, student, alpha, n)


def _check_prefix_weights(prefix_weights: str) -> None:
    if prefix_weights not in PREFIX_WEIGHTS:
        raise BoltzgenError(
            f"[trainer] prefix_weights = {prefix_weights!r}; choose one of: "
            f"{', '.join(PREFIX_WEIGHTS)}"
        )


def _future_sum(values: Tensor) -> Tensor:
    """sum_{t' > t} values_t' along the last axis (``(B, N)`` -> ``(B, N)``)."""
    return values.flip(-1).cumsum(-1).flip(-1) - values


def minillm_surrogate(
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    y: Tensor,
    alpha: float = 0.0,
    prefix_weights: str = "exact",
    length_normalize: bool = False,
    sampling_log_q: Tensor | None = None,
    clip_ratio: float = 0.2,
) -> tuple[Tensor, Tensor]:
    r"""MiniLLM's surrogate for grad KL(q||p) (Gu et al., ICLR 2024) on states ``y`` ``(B, N)``
    drawn by :func:`teacher_mixed_sample` with the same ``alpha``.

    With c_t = log q(y_t|y_<t) - log p(y_t|y_<t) (= -r_t), the gradient of E_q sum_t c_t is
    the *single-step* part E_q sum_t grad KL(q_t||p_t)(y_<t) (exact sum over the K values of
    site t) plus the *long-term* part E_q sum_t (sum_{t'>t} c_t') grad log q(y_t|y_<t), here with
    a leave-one-out baseline. Under teacher-mixed sampling the expectations over q become
    weighted ones: ``prefix_weights = "exact"`` weights each term by the exact prefix product
    W_{<=t} = prod_{t'<=t} q_t'/p~_t' of the sites it depends on (unbiased);
    ``"per-token"`` is the paper's approximation, every term at t weighted by q_t/p~_t alone
    (biased). ``length_normalize`` divides the future sum by the number of remaining sites
    (the paper's R^Norm: a different, biased objective for fixed-length sequences).

    PPO (the paper's clipping, for several updates on one batch): ``sampling_log_q`` ``(B, N)``
    is the per-site log q of the student that drew ``y``; costs, weights and the advantages
    A_t (future cost minus its leave-one-out baseline) are then those of that student, and the
    long-term part is max(A_t rho_t, A_t clip(rho_t, 1 - clip_ratio, 1 + clip_ratio)) with
    rho_t = q(y_t|y_<t) / q_sampling(y_t|y_<t) (pessimistic for a cost). At rho = 1 its
    gradient is the plain long-term part's; ``None`` (one update per batch) is that case.

    Returns:
        ``(loss, reverse_kl)``: the surrogate and the weighted estimate of KL(q||p) (detached).
    """
    _check_prefix_weights(prefix_weights)
    with torch.no_grad():
        teacher_logits, log_p = _site_log_probs(teacher, y)
    student_logits, log_q = _site_log_probs(student, y)
    drawn_by = log_q.detach() if sampling_log_q is None else sampling_log_q
    cost = drawn_by - log_p
    log_w = torch.zeros_like(cost)
    if alpha > 0.0:
        log_mix = torch.logaddexp(math.log(alpha) + log_p, math.log1p(-alpha) + drawn_by)
        log_w = drawn_by - log_mix
    if prefix_weights == "exact":
        upto = log_w.cumsum(-1).exp()  # W_{<=t}
        before = (log_w.cumsum(-1) - log_w).exp()  # W_{<t}
        future = _future_sum(upto * cost)
    else:
        upto = before = log_w.exp()
        future = upto * _future_sum(cost)
    if length_normalize:
        remaining = torch.arange(y.shape[-1] - 1, -1, -1, device=y.device, dtype=cost.dtype)
        future = future / remaining.clamp(min=1)
    single = before * reverse_kl(teacher_logits, student_logits)
    advantage = future - upto * leave_one_out(future)
    if sampling_log_q is None:
        long_term = advantage * log_q
    else:
        ratio = (log_q - sampling_log_q).exp()
        clipped = ratio.clamp(1.0 - clip_ratio, 1.0 + clip_ratio)
        long_term = torch.maximum(advantage * ratio, advantage * clipped)
    loss = (single + long_term).sum(-1).mean()
    return loss, (upto * cost).sum(-1).mean().detach()


class TeacherSamples:
    """Teacher samples for the divergences evaluated on them: fresh ones at every draw, or
    draws with replacement from a buffer sampled once.

    Arguments:
        teacher: A model with ``sample(n)``.
        size: 0 for fresh samples; N > 0 for a buffer of N teacher samples, drawn here from the
            global generator in chunks of ``chunk`` (so a run rebuilt from its seed rebuilds the
            same buffer).
        chunk: Samples per teacher call while the buffer is drawn.
    """

    def __init__(self, teacher: torch.nn.Module, size: int = 0, chunk: int = 4096) -> None:
        if size < 0:
            raise BoltzgenError(f"[trainer] teacher_samples = {size!r} must be >= 0")
        self.teacher = teacher
        self.buffer: Tensor | None = None
        if size:
            with torch.no_grad():
                parts = [teacher.sample(min(chunk, size - i)) for i in range(0, size, chunk)]
            self.buffer = torch.cat(parts)

    def draw(self, n: int) -> Tensor:
        """``n`` teacher samples ``(n, *event_shape)``, without a graph."""
        if self.buffer is None:
            with torch.no_grad():
                return self.teacher.sample(n)
        index = torch.randint(len(self.buffer), (n,), device=self.buffer.device)
        return self.buffer[index]


class TeacherObjective:
    """What every distillation objective shares: its config name, no temperature of its own
    (the teacher's) and no target-energy evaluation in training."""

    name = "distill"
    temperature: float | None = None
    energy_calls_per_sample = 0

    def energy_evaluations(self, batch_size: int) -> int:
        """No target-energy evaluations: the teacher stands in for the target."""
        return 0


class Distill(TeacherObjective):
    """Distillation of a frozen normalized teacher into an autoregressive student.

    Arguments:
        teacher: The teacher model (normalized, discrete: ``sample`` and ``log_prob``; an
            autoregressive model without ``z2`` for the per-site divergences), frozen here.
        divergence: One of :data:`DIVERGENCES` (see the module docstring).
        skew_lambda: lam of the skewed KLs, in [0, 1).
        mix_alpha: alpha of MiniLLM's teacher-mixed sampling, in [0, 1) (0: student samples).
        prefix_weights: MiniLLM's importance weights, "exact" (prefix products: unbiased) or
            "per-token" (the paper's approximation).
        length_normalize: MiniLLM's length-normalized future reward.
        teacher_samples: For the divergences on teacher samples: 0 draws fresh ones every
            step, N > 0 a buffer of N once (:class:`TeacherSamples`).
        ppo_epochs: MiniLLM: optimiser steps per teacher-mixed batch (1: a fresh batch every
            step); with more, the long-term part is PPO-clipped (:func:`minillm_surrogate`).
        clip_ratio: MiniLLM with PPO: the ratio is clipped to [1 - clip_ratio, 1 + clip_ratio].

    ``loss(student, batch_size)`` draws ``batch_size`` teacher samples (``"forward"``,
    ``"skew-forward"``, ``"dkdr"``) or student samples (``"reverse"``, ``"skew-reverse"``) from
    torch's global generator (checkpointed by the :class:`~boltzgen.trainers.Trainer`). The
    diagnostic ``"divergence"`` is the batch estimate of the objective (for ``"forward"`` the
    cross-entropy KL(p||q) + H(p), for ``"reverse"`` KL(q||p) exactly in expectation); where
    the step draws student samples (``"reverse"``, ``"skew-reverse"``) also ``"ess_teacher"``,
    the reverse ESS fraction of the weights p/q (unclipped). The ESS to the target is in the
    run's ``summary.json``.
    """

    def __init__(
        self,
        teacher: torch.nn.Module,
        divergence: str = "forward",
        skew_lambda: float = 0.1,
        mix_alpha: float = 0.2,
        prefix_weights: str = "exact",
        length_normalize: bool = False,
        teacher_samples: int = 0,
        ppo_epochs: int = 1,
        clip_ratio: float = 0.2,
    ) -> None:
        if divergence not in DIVERGENCES:
            raise BoltzgenError(
                f"[trainer] divergence = {divergence!r}; choose one of: {', '.join(DIVERGENCES)}"
            )
        check_lambda(skew_lambda)
        if not 0.0 <= mix_alpha < 1.0:
            raise BoltzgenError(f"[trainer] mix_alpha = {mix_alpha!r} must be in [0, 1)")
        _check_prefix_weights(prefix_weights)
        if divergence in _SITE_DIVERGENCES and (
            not hasattr(teacher, "conditional_logits") or getattr(teacher, "z2", False)
        ):
            raise BoltzgenError(
                f'[trainer] divergence = "{divergence}" compares per-site conditionals: the '
                "teacher must be an autoregressive model (made, pixelcnn) without z2"
            )
        self.teacher = teacher.eval().requires_grad_(False)
        self.divergence = divergence
        self.skew_lambda = float(skew_lambda)
        self.mix_alpha = float(mix_alpha)
        self.prefix_weights = prefix_weights
        self.length_normalize = bool(length_normalize)
        on_teacher = divergence in ("forward", "skew-forward", "dkdr")
        self.teacher_samples = TeacherSamples(teacher, teacher_samples if on_teacher else 0)
        if ppo_epochs < 1 or (ppo_epochs > 1 and divergence != "minillm"):
            raise BoltzgenError(
                f"[trainer] ppo_epochs = {ppo_epochs!r}: give 1, or more than 1 with "
                'divergence = "minillm" (several updates per teacher-mixed batch)'
            )
        if not 0.0 < clip_ratio < 1.0:
            raise BoltzgenError(f"[trainer] clip_ratio = {clip_ratio!r} must be in (0, 1)")
        self.ppo_epochs = int(ppo_epochs)
        self.clip_ratio = float(clip_ratio)
        self._ppo_batch: dict[str, Any] = {}  # MiniLLM's batch while it is reused (PPO)
        self.min_batch_size = 2 if divergence in ("reverse", "skew-reverse", "minillm") else 1

    def _check_student(self, student: torch.nn.Module) -> None:
        if not getattr(student, "normalized", False) or not hasattr(student, "conditional_logits"):
            raise BoltzgenError(
                f"[model] {type(student).__name__} cannot be a distillation student: use an "
                "autoregressive model (made, pixelcnn)"
            )
        if self.divergence in _SITE_DIVERGENCES and getattr(student, "z2", False):
            raise BoltzgenError(
                f'[trainer] divergence = "{self.divergence}" compares per-site conditionals: '
                "the student must not be z2-symmetrised (set [model] z2 = false)"
            )

    def loss(self, student: torch.nn.Module, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        self._check_student(student)
        if self.divergence == "forward":
            nll = -student.log_prob(self.teacher_samples.draw(batch_size)).mean()
            return nll, {"divergence": nll.detach()}
        if self.divergence == "reverse":
            y = student.sample(batch_size)
            log_q = student.log_prob(y)
            cost = (log_q - self.teacher.log_prob(y)).detach()
            loss = ((cost - leave_one_out(cost)) * log_q).mean()
            return loss, {"divergence": cost.mean(), "ess_teacher": reverse_ess(-cost, 0.0)}
        if self.divergence == "minillm":
            y, sampling_log_q = self._minillm_batch(student, batch_size)
            loss, estimate = minillm_surrogate(
                self.teacher,
                student,
                y,
                self.mix_alpha,
                self.prefix_weights,
                self.length_normalize,
                sampling_log_q,
                self.clip_ratio,
            )
            return loss, {"divergence": estimate}
        on_teacher = self.divergence != "skew-reverse"
        x = self.teacher_samples.draw(batch_size) if on_teacher else student.sample(batch_size)
        with torch.no_grad():
            teacher_logits, log_p_sites = _site_log_probs(self.teacher, x)
        student_logits, log_q_sites = _site_log_probs(student, x)
        sites = site_divergence(self.divergence, teacher_logits, student_logits, self.skew_lambda)
        objective = sites.sum(-1).mean()
        if on_teacher:
            return objective, {"divergence": objective.detach()}
        cost = sites.detach()  # score-function part: reward to go R_j = sum_{i>j} D_i
        to_go = _future_sum(cost)
        loss = objective + ((to_go - leave_one_out(to_go)) * log_q_sites).sum(-1).mean()
        log_w = (log_p_sites - log_q_sites).sum(-1).detach()
        return loss, {"divergence": objective.detach(), "ess_teacher": reverse_ess(log_w, 0.0)}

    def _minillm_batch(self, student: torch.nn.Module, batch_size: int) -> tuple[Tensor, Any]:
        """MiniLLM's teacher-mixed batch ``(B, N)``: a fresh one every step, or with
        ``ppo_epochs`` K > 1 the same one for K consecutive steps, with the per-site log q of
        the student that drew it (``None`` without PPO)."""
        if self.ppo_epochs == 1:
            return teacher_mixed_sample(self.teacher, student, batch_size, self.mix_alpha), None
        if not self._ppo_batch or self._ppo_batch["uses"] >= self.ppo_epochs:
            y = teacher_mixed_sample(self.teacher, student, batch_size, self.mix_alpha)
            with torch.no_grad():
                sampling_log_q = _site_log_probs(student, y)[1]
            self._ppo_batch = {"samples": y, "sampling_log_q": sampling_log_q, "uses": 0}
        self._ppo_batch["uses"] += 1
        return self._ppo_batch["samples"], self._ppo_batch["sampling_log_q"]

    def state_dict(self) -> dict[str, Any]:
        """MiniLLM's batch while PPO reuses it (the global RNG state is the trainer's)."""
        return dict(self._ppo_batch)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._ppo_batch = dict(state)
