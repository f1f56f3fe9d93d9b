"""Per-window Swin Transformer over residual tokens (paper Eq. 9, algorithm reference section 5).

Input tokens are channels-last ``(B, H, W, d_t)``; the output is per-token 2-class logits
``(B, H, W, 2)``; :func:`anomaly_probability` gives the anomaly confidence (softmax channel 1), the
``Theta_w`` of Eq. 9.

Architecture (all attention from timm, nothing hand-written):
``Linear(d_t -> embed_dim)`` -> (``LayerNorm``, off by default, see below) ->
``timm SwinTransformerStage`` (``depth`` blocks, no downsampling, regular / shifted windows
alternating: blocks 0, 2, ... unshifted, 1, 3, ... shifted by window // 2) -> ``LayerNorm`` ->
``Linear(embed_dim -> 2)``. No absolute position embedding: the position is already inside the
PCF (Eq. 2) and the blocks carry a relative position bias.

No LayerNorm on the projected input by default (``input_norm=False``), unlike timm's Swin patch
embedding: a LayerNorm divides each token's vector by its own spread, and a linear projection of a
residual scales with the residual, so the normalised token no longer carries the residual's size,
which is the anomaly evidence (PatchCore's whole score). Measured on screw (fast preset, 300
steps): with the LayerNorm pixel AP 6.4 and image AUROC 46 (the model cannot tell a large residual
from a small one of the same direction); without it AP 45.4 and image AUROC 88.

Magnitude skip (``magnitude_skip``, on in the fast preset; not in the paper): the anomaly logit
gets ``a * log(mean of the token's residual) + b`` added, with ``a`` starting at 1. The mean
squared residual is PatchCore's score (squared), so the model starts from PatchCore's ranking and
the Swin learns a correction from context. Without it the magnitude must travel through a pre-norm
residual stream and a final LayerNorm to the head, which at the fast preset's 500 steps it does
only partly (a 3x larger input moved the untrained anomaly logit by 0.03, a different input of the
same size by 0.3). Measured in BENCHMARKS.md ("magnitude skip").

Any spatial size: the blocks are built with timm's ``dynamic_mask=True``, so the shifted-window
attention mask is computed for the actual input size at every call. The same weights therefore run
on ``mu x mu`` windows (bagging, Eq. 10) and on a whole token map of another size (the "no bagging"
ablation). The window size is fixed at construction from ``window_size`` and ``input_size`` (timm
shrinks the window to the input when ``input_size <= window_size`` and then disables shifting).
Maps that are not a multiple of the window are zero-padded by timm (bottom / right) and cropped
back; the padded positions act as extra keys in border windows. Prefer whole-map sizes that are
multiples of the window (64 x 64 at the paper's resolution is).

The paper preset (:data:`PAPER_SWIN`): d_t = 1024, embed_dim 1024, 4 blocks, 32 heads (head dim 32),
window 8, MLP ratio 4 -> 51.467 M parameters (paper Table 6: 51.44 M).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from timm.layers import trunc_normal_
from timm.models.swin_transformer import SwinTransformerStage
from torch import nn


@dataclass(frozen=True)
class SwinConfig:
    """Every knob of :class:`ResidualSwin`; presets are named instances."""

    in_dim: int = 1024          # d_t = d_f * rho**2
    embed_dim: int = 1024
    depth: int = 4
    num_heads: int = 32
    window_size: int = 8
    mlp_ratio: float = 4.0
    drop_path: float = 0.1      # stochastic depth, linearly increasing from 0 over the blocks
    input_size: int = 32        # mu, the training window size
    input_norm: bool = False    # LayerNorm after the input projection (erases the residual magnitude)
    magnitude_skip: bool = False  # add a * log(mean token residual) + b to the anomaly logit (see below)
    qkv_bias: bool = True
    fused_attn: bool = True     # torch scaled_dot_product_attention inside timm's WindowAttention


PAPER_SWIN = SwinConfig()
# Floor of the mean token residual inside the magnitude skip (an almost exact match reads as
# log 1e-3 = -6.9, not minus infinity). A token that is exactly zero (dropped by PCR dropout,
# Eq. 13) gets log 1 = 0 instead: otherwise ResMixMatch's dropped unknown tokens, whose targets
# can be high, would train the skip's scale towards 0.
MIN_MEAN_RESIDUAL = 1e-3


class ResidualSwin(nn.Module):
    """Swin Transformer mapping residual tokens to per-token anomaly logits (Eq. 9)."""

    def __init__(self, config: SwinConfig | None = None, **overrides):
        super().__init__()
        cfg = config if config is not None else SwinConfig()
        if overrides:
            cfg = SwinConfig(**{**asdict(cfg), **overrides})
        if cfg.embed_dim % cfg.num_heads:
            raise ValueError(f"embed_dim {cfg.embed_dim} is not divisible by num_heads {cfg.num_heads}")
        self.config = cfg
        self.proj = nn.Linear(cfg.in_dim, cfg.embed_dim)
        self.proj_norm = nn.LayerNorm(cfg.embed_dim) if cfg.input_norm else nn.Identity()
        dpr = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.stage = SwinTransformerStage(
            dim=cfg.embed_dim,
            out_dim=cfg.embed_dim,
            input_resolution=(cfg.input_size, cfg.input_size),
            depth=cfg.depth,
            downsample=False,
            num_heads=cfg.num_heads,
            window_size=cfg.window_size,
            dynamic_mask=True,
            mlp_ratio=cfg.mlp_ratio,
            qkv_bias=cfg.qkv_bias,
            drop_path=dpr,
            norm_layer=nn.LayerNorm,
        )
        for block in self.stage.blocks:
            # timm keeps fused (SDPA) attention behind an "experimental" flag for Swin; the maths is
            # identical (tests/unit/test_swin.py checks it) and it is much faster on a GPU.
            block.attn.fused_attn = bool(cfg.fused_attn)
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.head = nn.Linear(cfg.embed_dim, 2)
        self.apply(self._init_weights)
        if cfg.magnitude_skip:
            # a starts at 1: the untrained model already ranks tokens as PatchCore does.
            self.skip_scale = nn.Parameter(torch.ones(()))
            self.skip_bias = nn.Parameter(torch.zeros(()))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # Swin's initialisation: truncated normal (std 0.02) linear weights, zero biases.
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, H, W, in_dim) channels-last tokens -> (B, H, W, 2) logits (channel 1 = anomaly)."""
        if tokens.dim() != 4 or tokens.shape[-1] != self.config.in_dim:
            raise ValueError(
                f"expected (B, H, W, {self.config.in_dim}) channels-last tokens, got {tuple(tokens.shape)}")
        x = self.proj_norm(self.proj(tokens))
        x = self.stage(x)
        logits = self.head(self.norm(x))
        if self.config.magnitude_skip:
            mean = tokens.float().mean(dim=-1)
            # a token zeroed by PCR dropout (Eq. 13) has no size to tell: it reads as a typical
            # normal token (scaled mean residual 1, log 0) and the context decides
            size = torch.where(mean > 0, torch.log(mean.clamp_min(MIN_MEAN_RESIDUAL)), torch.zeros_like(mean))
            skip = self.skip_scale * size + self.skip_bias
            logits = logits + torch.stack((torch.zeros_like(skip), skip), dim=-1).to(logits.dtype)
        return logits


def anomaly_probability(logits: torch.Tensor) -> torch.Tensor:
    """Anomaly confidence per token: softmax over the 2 logits, channel 1 (Eq. 9). (..., 2) -> (...)."""
    return torch.softmax(logits.float(), dim=-1)[..., 1]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (paper Table 6 reports 51.44 M for the paper preset)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
