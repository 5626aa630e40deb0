"""The peers' multi-label losses, written from their definitions.

- `ranking_loss` (TaI-DPT, `trainers/utils.py: ranking_loss`, used as "double_ranking" with scale 1 and
  margin 1): for each sample, the hinge max(0, margin - s_p + s_n) summed over every (positive p,
  negative n) pair of its labels, then averaged over samples. Only score differences within a sample
  count, so it suits logits scaled by CLIP's logit scale (CoOp).
- `dual_asymmetric_loss` (DualCoOp, `utils/asymmetric_loss.py: AsymmetricLoss`): per (sample, label) a
  softmax over the (negative, positive) logit pair gives p+ and p-; the asymmetric loss (Ridnik et al.)
  with gamma_neg 2, gamma_pos 1 and probability margin ("clip") 0.05 on the negative side, the focusing
  weight held constant (no gradient through it), summed over the known entries only: unknown entries
  (partial labels) contribute nothing.
- `multilabel_bce` (TaI-DPT, `trainers/utils.py: norm_logits_BCEloss`, its few-shot objective):
  torch's binary cross-entropy on logits, averaged over every (sample, label).
"""

from __future__ import annotations

import torch


def ranking_loss(scores: torch.Tensor, targets: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """(batch, labels) scores and 0/1 targets -> mean over samples of the summed pairwise hinge."""
    positive = targets > 0.5
    # hinge[b, n, p] = margin - s_p + s_n, kept where p is a positive and n a negative of sample b
    hinge = (margin - scores[:, None, :] + scores[:, :, None]).clamp(min=0)
    pairs = (~positive)[:, :, None] & positive[:, None, :]
    return (hinge * pairs).sum(dim=(1, 2)).mean()


def multilabel_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(batch, labels) logits and 0/1 targets -> mean BCE over every entry."""
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets.float())


def dual_asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    known: torch.Tensor,
    gamma_neg: float = 2.0,
    gamma_pos: float = 1.0,
    clip: float = 0.05,
    eps: float = 1e-6,
) -> torch.Tensor:
    """logits (batch, 2, labels), index 0 the negative and 1 the positive prompt; targets and known
    (batch, labels) 0/1. Sum over known entries (DualCoOp's reduction)."""
    probs = logits.softmax(dim=1)
    known, y = (known > 0.5).float(), targets.float()
    p_pos, p_neg = probs[:, 1], probs[:, 0]
    if clip > 0:
        p_neg = (p_neg + clip).clamp(max=1)
    loss = y * p_pos.clamp(min=eps).log() + (1 - y) * p_neg.clamp(min=eps).log()
    with torch.no_grad():
        p_true = p_pos * y + p_neg * (1 - y)
        weight = (1 - p_true).pow(gamma_pos * y + gamma_neg * (1 - y))
    return -(loss * weight * known).sum()  # unknown entries weigh 0 (DualCoOp drops them)
