"""Mimic's training objective: seven terms, the official weights and schedule.

Shapes: B batch, T frames, M = 3V motion dim, C feature dim, K audio features per frame.

    audio_reconstruction    MSE(D(a, s), M)                                             1
    content_reconstruction  MSE(D(c, s), M)                                             1
    style_classifier        CE(style_classifier(s), id)                                 2.5e-7
    inverse_classifier      CE(inverse_classifier(GRL_alpha(mean_t c)), id)             5e-7, x0.1 from epoch 20,
                                                                                        x0.5 more from 40
    content_clip            symmetric InfoNCE between the B*T frames of c and of a       5e-7
    style_cycle             1 - cos(s_shuffled.detach(), s')                             2e-5
    content_cycle           margin contrastive loss between c' and c.detach()            5e-6

where s = E_s(M), c = E_c(M), a = E_a(audio), and the cycle decodes c with the style codes
shuffled across the batch, M' = D(c, s_shuffled), then re-encodes s' = E_s(M'), c' = E_c(M').
A term that is switched off (or weighted 0) is not computed at all, nor are the passes only it
needs: that is how the ablation is run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .model import Mimic

TERMS = ("audio_reconstruction", "content_reconstruction", "style_classifier", "inverse_classifier",
         "content_clip", "style_cycle", "content_cycle")
OFFICIAL_WEIGHTS = dict(audio_reconstruction=1.0, content_reconstruction=1.0, style_classifier=2.5e-7,
                        inverse_classifier=5e-7, content_clip=5e-7, style_cycle=2e-5, content_cycle=5e-6)
# The reference multiplies the inverse classifier's weight by 0.1 when epoch 20 ends and by 0.5
# more when epoch 40 ends: epochs 0-19 use 5e-7, 20-39 use 5e-8, 40 on use 2.5e-8.
OFFICIAL_INVERSE_DECAY = ((20, 0.1), (40, 0.5))


@dataclass
class Objective:
    """Which terms are on, and their weights. `weights` holds the enabled terms only."""
    weights: dict[str, float] = field(default_factory=lambda: dict(OFFICIAL_WEIGHTS))
    grl_alpha: float = 1.0  # gradient-reversal factor of the inverse classifier
    inverse_decay: tuple[tuple[int, float], ...] = OFFICIAL_INVERSE_DECAY  # (from epoch, factor), cumulative
    margin: float = 1.0  # of the content cycle's contrastive loss

    def __post_init__(self):
        unknown = set(self.weights) - set(TERMS)
        assert not unknown, f"unknown loss terms {sorted(unknown)}; the terms are {TERMS}"
        self.weights = {k: float(w) for k, w in self.weights.items() if w != 0}

    def weights_at(self, epoch: int) -> dict[str, float]:
        """The weights of the enabled terms during `epoch` (0-based)."""
        weights = dict(self.weights)
        if "inverse_classifier" in weights:
            for start, factor in self.inverse_decay:
                if epoch >= start:
                    weights["inverse_classifier"] *= factor
        return weights


# ------------------------------------------------------------------------------------- terms


def clip_loss(content: torch.Tensor, audio: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over every frame of the batch: frame i of c should match frame i of a
    among all B*T audio frames, and the other way round. content, audio (B, T, C); logit_scale
    is the multiplier (the exp of the learnt log scale)."""
    c = F.normalize(content.reshape(-1, content.shape[-1]), dim=-1)  # (B*T, C)
    a = F.normalize(audio.reshape(-1, audio.shape[-1]), dim=-1)  # (B*T, C)
    logits = logit_scale * c @ a.T  # (B*T, B*T)
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def contrastive_loss(x: torch.Tensor, y: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The reference's margin contrastive loss between x (B, ...) and y (B, ...): each sample
    flattened and L2-normalised, d_ij = |x_i - y_j|; pulls matching pairs together (d_ii^2) and
    pushes the others at least `margin` apart (max(0, margin - d_ij)^2, i != j); sum / 2B."""
    x = F.normalize(x.reshape(len(x), -1), dim=1)  # (B, T*C)
    y = F.normalize(y.reshape(len(y), -1), dim=1)
    distance = (x[:, None] - y[None]).norm(dim=-1)  # (B, B)
    apart = (margin - distance).clamp(min=0).masked_fill(torch.eye(len(x), dtype=torch.bool, device=x.device), 0)
    return (apart.pow(2).sum() + distance.diagonal().pow(2).sum()) / (2 * len(x))


def style_cycle_loss(target: torch.Tensor, cycled: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(target_i, cycled_i) over the batch; target (B, C) is not trained through."""
    return (1 - F.cosine_similarity(target.detach(), cycled, dim=-1)).mean()


# --------------------------------------------------------------------------------- objective


class TrainingStep(nn.Module):
    """The whole objective as one module, so one forward (what DistributedDataParallel wraps)
    computes every enabled term. Returns raw (unweighted) terms, the weighted total in "loss",
    and the classifiers' batch accuracies."""

    def __init__(self, model: Mimic, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, audio: torch.Tensor, motion: torch.Tensor, init_state: torch.Tensor, labels: torch.Tensor,
                weights: dict[str, float]) -> dict[str, torch.Tensor]:
        """audio (B, S) normalised, motion (B, T, M) = vertices - template, init_state (B, M),
        labels (B,) classifier indices; weights: the enabled terms' weights (Objective.weights_at)."""
        m, on = self.model, weights.keys()
        B, T, _ = motion.shape
        K = m.config.features_per_frame
        needs_audio = on & {"audio_reconstruction", "content_clip"}
        needs_content = on & {"content_reconstruction", "inverse_classifier", "content_clip", "style_cycle",
                              "content_cycle"}
        needs_style = on - {"inverse_classifier", "content_clip"}
        cycle = on & {"style_cycle", "content_cycle"}

        s = m.encode_style(motion) if needs_style else None  # (B, C)
        c = m.content_encoder(motion) if needs_content else None  # (B, T, C)
        a = m.audio_encoder(audio, T) if needs_audio else None  # (B, T*K, C)
        # the decoder reads K features per frame (2 for BIWI): each content code stands for K
        c_decoded = c.repeat_interleave(K, dim=1) if c is not None and K > 1 else c  # (B, T*K, C)

        terms, out = {}, {}
        if "audio_reconstruction" in on:
            terms["audio_reconstruction"] = F.mse_loss(m.decoder(a, s, init_state).float(), motion.float())
        if "content_reconstruction" in on:
            terms["content_reconstruction"] = F.mse_loss(m.decoder(c_decoded, s, init_state).float(), motion.float())
        if "style_classifier" in on:
            logits = m.style_logits(s).float()  # (B, ids)
            terms["style_classifier"] = F.cross_entropy(logits, labels)
            out["style_accuracy"] = (logits.argmax(-1) == labels).float().mean()
        if "inverse_classifier" in on:
            logits = m.inverse_logits(c, self.objective.grl_alpha).float()  # (B, ids)
            terms["inverse_classifier"] = F.cross_entropy(logits, labels)
            out["inverse_accuracy"] = (logits.argmax(-1) == labels).float().mean()
        if "content_clip" in on:
            a_frames = a.unflatten(1, (T, K)).mean(dim=2) if K > 1 else a  # (B, T, C)
            terms["content_clip"] = clip_loss(c.float(), a_frames.float(), m.logit_scale.exp().float())
        if cycle:
            shuffled = s[torch.randperm(B).to(s.device)]  # (B, C)
            cycled = m.decoder(c_decoded, shuffled, init_state)  # (B, T, M)
            if "style_cycle" in on:
                terms["style_cycle"] = style_cycle_loss(shuffled.float(), m.style_encoder(cycled).float())
            if "content_cycle" in on:
                terms["content_cycle"] = contrastive_loss(m.content_encoder(cycled).float(), c.detach().float(),
                                                          self.objective.margin)
        out["loss"] = sum(weights[k] * v for k, v in terms.items())
        return {**out, **terms}
