"""The stage graph: residual blocks grouped into stages, an embedding in front, a head behind."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Sequential):
    """Channel MLP: Linear -> GELU -> Dropout -> Linear -> Dropout, (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )


class DropPath(nn.Module):
    """Stochastic depth: drops a whole residual branch per sample while training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


# How a block wires its mixer and MLP around the residual stream.
WIRINGS = ("pre", "post", "shared", "mid", "bare")


class Block(nn.Module):
    """Token mixer then MLP, wired one of five ways (``WIRINGS``):

    - ``pre``: two pre-norm residuals, ``x += mixer(norm1 x); x += mlp(norm2 x)`` (ViT, DeiT, Mixer);
    - ``post``: two post-norm residuals, ``x = norm1(x + mixer x); x = norm2(x + mlp x)`` (FNet);
    - ``shared``: one residual around both, ``x += mlp(norm2(mixer(norm1 x)))`` (GFNet: the
      filter has no residual of its own);
    - ``mid``: a pre-norm mixer residual, then the stream itself normalised, then an MLP
      residual without a norm, ``x += mixer(norm1 x); x = norm2 x; x += mlp x`` (CCT's
      ``TransformerEncoderLayer``);
    - ``bare``: two residuals and no norm, ``x += mixer x; x += mlp x`` (LeViT, whose
      norms are the BatchNorms inside its attention).
    """

    def __init__(
        self,
        dim: int,
        mixer: nn.Module,
        *,
        mlp_hidden: int,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        wiring: str = "pre",
    ) -> None:
        super().__init__()
        if wiring not in WIRINGS:
            raise ValueError(f"block must be one of {', '.join(WIRINGS)}, got {wiring!r}")
        self.wiring = wiring
        bare = wiring == "bare"  # no norm is built that no forward pass reads
        self.norm1, self.mixer = nn.Identity() if bare else nn.LayerNorm(dim), mixer
        self.norm2, self.mlp = nn.Identity() if bare else nn.LayerNorm(dim), MLP(dim, mlp_hidden, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, hw, kv=None, kv_hw=None) -> torch.Tensor:
        # kv/kv_hw: the unpooled tokens of a funnel pool-query-only block, normalised as x is.
        post = self.wiring == "post"
        kw = {} if kv is None else {"kv": kv if post else self.norm1(kv), "kv_hw": kv_hw}
        if post:
            x = self.norm1(x + self.drop_path(self.mixer(x, hw, **kw)))
            return self.norm2(x + self.drop_path(self.mlp(x)))
        if self.wiring == "shared":
            return x + self.drop_path(self.mlp(self.norm2(self.mixer(self.norm1(x), hw, **kw))))
        x = x + self.drop_path(self.mixer(self.norm1(x), hw, **kw))
        if self.wiring == "mid":
            x = self.norm2(x)
            return x + self.drop_path(self.mlp(x))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        return f"wiring={self.wiring}"


class Stage(nn.Module):
    """A transition into the stage, then its blocks at one width and one token grid."""

    def __init__(self, transition: nn.Module, blocks: list[Block], *, query_only: bool = False) -> None:
        super().__init__()
        self.transition, self.blocks, self.query_only = transition, nn.ModuleList(blocks), query_only

    def forward(self, x: torch.Tensor, hw: tuple[int, int]):
        blocks = list(self.blocks)
        if self.query_only:  # Funnel-Transformer: pooled queries attend to unpooled tokens
            kv, kv_hw = self.transition.proj(x), hw
            x, hw = self.transition.pool(kv, hw)
            x = blocks.pop(0)(x, hw, kv=kv, kv_hw=kv_hw)
        else:
            x, hw = self.transition(x, hw)
        for block in blocks:
            x = block(x, hw)
        return x, hw


class VisionModel(nn.Module):
    """images (B, C, H, W) -> logits (B, classes). ``summary`` is its one-line layout;
    ``head`` is one of ``blocks.registry.HEADS``.

    With ``input_mean``/``input_std`` (per channel) the model normalises its input first:
    they are buffers, so they travel with the weights and the pickled module, and a
    model taken away needs no preprocessing beyond the image size.
    """

    def __init__(
        self,
        embed: nn.Module,
        positional: nn.Module,
        stages: list[Stage],
        *,
        width_in: int,
        width_out: int,
        num_classes: int,
        head: str,
        summary: str = "",
        final_norm: bool = True,
        input_mean: tuple[float, ...] | None = None,
        input_std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        # None registers nothing: a model without normalisation has the state dict it always had.
        for name, values in (("input_mean", input_mean), ("input_std", input_std)):
            self.register_buffer(name, None if values is None else torch.tensor(values).view(1, -1, 1, 1))
        self.embed, self.positional, self.stages = embed, positional, nn.ModuleList(stages)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width_in)) if head == "cls" else None
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.norm = nn.LayerNorm(width_out) if final_norm else nn.Identity()  # LeViT and CvT have none
        # CCT's sequence pooling: a learned score per token, the tokens averaged by its softmax.
        self.attention_pool = nn.Linear(width_out, 1) if head == "seq_pool" else None
        self.head = nn.Linear(width_out, num_classes)
        self.summary = summary

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        if self.input_mean is not None:
            images = (images - self.input_mean) / self.input_std
        if images.is_cuda:  # cuDNN convolutions prefer NHWC
            images = images.contiguous(memory_format=torch.channels_last)
        x, hw = self.embed(images)  # (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, D)
        x = self.positional(x, hw)
        for stage in self.stages:
            x, hw = stage(x, hw)
        x = self.norm(x)
        if self.cls_token is not None:
            return x[:, 0]  # (B, D)
        if self.attention_pool is not None:
            weights = torch.softmax(self.attention_pool(x), dim=1)  # (B, N, 1)
            return (weights * x).sum(dim=1)  # (B, D)
        return x.mean(dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(images))  # (B, classes)

    def extra_repr(self) -> str:
        return self.summary
