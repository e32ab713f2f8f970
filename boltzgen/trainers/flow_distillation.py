r"""Knowledge distillation of a normalized continuous teacher (a trained flow) into a flow.

With p the teacher and q the student (both normalized densities over the same states, e.g. two
:class:`~boltzgen.flows.MolecularFlow` of one molecule), :class:`FlowDistill` minimises one of

- ``"forward"``: KL(p||q) by maximum likelihood on teacher samples, -mean log q(x), x ~ p;
- ``"reverse"``: KL(q||p) with the pathwise gradient: x = T_theta(z) from the student's
  ``sample_and_log_prob``, loss mean(log q(x) - log p(x)); the teacher's log p is differentiated
  with respect to x (its parameters stay frozen). This is reverse KL against the energy
  u = -log p (:class:`~boltzgen.energy.LogProbEnergy`) with log Z = 0;
- ``"skew-forward"``: KL(p || lam p + (1 - lam) q) on teacher samples;
- ``"skew-reverse"``: KL(q || (1 - lam) p + lam q) on student samples, pathwise;

the mixture densities by logsumexp (DistiLLM, Ko et al. 2024). At lam = 0 the skewed KLs are the
plain ones. Every loss is the batch mean of its integrand, so its autograd gradient is an
unbiased estimate of the divergence's gradient (pathwise on student samples; on teacher samples
the integrand's only dependence on the student is through log q).

Samples whose term is not finite (outside the teacher's support: log p = -inf) are left out
and counted (``nonfinite_samples``), as in :class:`~boltzgen.trainers.ReverseKL`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import BoltzgenError
from ..samplers.weights import reverse_ess
from .distillation import TeacherObjective, TeacherSamples, check_lambda, log_mixture
from .objective import NONFINITE_SAMPLES, StepOutput, finite_mean
from .reverse_kl import drop_nonfinite_rows

__all__ = ["FLOW_DIVERGENCES", "FlowDistill"]

#: ``[trainer] divergence`` values of ``name = "distill"`` for continuous students.
FLOW_DIVERGENCES = ("forward", "reverse", "skew-forward", "skew-reverse")

#: Divergences whose loss is evaluated on student samples.
_ON_STUDENT = ("reverse", "skew-reverse")


class FlowDistill(TeacherObjective):
    """Distillation of a frozen normalized continuous teacher into a flow student.

    Arguments:
        teacher: The teacher (``sample(n)`` and a differentiable ``log_prob(x)``, states of the
            student's shape), frozen here.
        divergence: One of :data:`FLOW_DIVERGENCES` (see the module docstring).
        skew_lambda: lam of the skewed KLs, in [0, 1).
        teacher_samples: Teacher samples for the divergences on teacher samples: 0 draws fresh
            ones every step, N > 0 draws a buffer of N once (from the global generator, so a
            resumed run rebuilds the same buffer) and takes each batch from it with
            replacement.

    ``loss(student, batch_size)`` returns the batch estimate of the divergence as
    ``"divergence"`` (for ``"forward"`` the cross-entropy KL(p||q) + H(p)); on student samples
    also ``"ess_teacher"``, the reverse ESS fraction of the weights p/q (unclipped).
    """

    def __init__(
        self,
        teacher: torch.nn.Module,
        divergence: str = "forward",
        skew_lambda: float = 0.1,
        teacher_samples: int = 0,
    ) -> None:
        if divergence not in FLOW_DIVERGENCES:
            raise BoltzgenError(
                f"[trainer] divergence = {divergence!r} is not one for flows (it compares "
                "per-site categorical conditionals, which flows do not have); choose one of: "
                f"{', '.join(FLOW_DIVERGENCES)}"
            )
        check_lambda(skew_lambda)
        self.teacher = teacher.eval().requires_grad_(False)
        self.divergence = divergence
        self.skew_lambda = float(skew_lambda)
        on_student = divergence in _ON_STUDENT
        self.teacher_samples = None if on_student else TeacherSamples(teacher, teacher_samples)
        self.min_batch_size = 1

    def _check_student(self, student: torch.nn.Module) -> None:
        if self.divergence in _ON_STUDENT and not getattr(student, "reparameterized", False):
            raise BoltzgenError(
                f'[trainer] divergence = "{self.divergence}" differentiates through the '
                f"student's samples, but {type(student).__name__} is not reparameterized; use "
                'a flow or divergence = "forward"'
            )

    def loss(self, student: torch.nn.Module, batch_size: int) -> StepOutput:
        self._check_student(student)
        if self.teacher_samples is not None:
            x = self.teacher_samples.draw(batch_size)
            log_q = student.log_prob(x)
            if self.divergence == "forward":
                terms = -log_q
            else:
                with torch.no_grad():
                    log_p = self.teacher.log_prob(x)
                terms = log_p - log_mixture(log_p, log_q, self.skew_lambda)
            loss, nonfinite = finite_mean(terms)
            return loss, {"divergence": loss.detach(), NONFINITE_SAMPLES: nonfinite}
        x, log_q = student.sample_and_log_prob(batch_size)
        log_p = self.teacher.log_prob(x)
        if self.divergence == "reverse":
            terms = log_q - log_p
        else:
            terms = log_q - log_mixture(log_q, log_p, self.skew_lambda)
        loss, nonfinite = finite_mean(terms)
        if x.requires_grad:
            x.register_hook(drop_nonfinite_rows(torch.isfinite(terms.detach()), nonfinite))
        diagnostics = {
            "divergence": loss.detach(),
            "ess_teacher": reverse_ess((log_p - log_q).detach(), 0.0),
            NONFINITE_SAMPLES: nonfinite,
        }
        return loss, diagnostics

    def state_dict(self) -> dict[str, Any]:
        """Nothing beyond the global RNG state, which the trainer checkpoints (the buffer is
        rebuilt from the seed)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""
