"""MLP-Mixer token mixing (Tolstikhin et al. 2021, google-research/vision_transformer)."""

from __future__ import annotations

import torch
from torch import nn

from blocks.registry import MIXERS, register


@register(MIXERS, "mlp_mixer")
class TokenMLP(nn.Module):
    """MLP-Mixer: an MLP across tokens (hidden = token_ratio x N), O(N^2 D r).

    The token weights are (N, hidden), so the layer is built for one token count. The
    block's own MLP is the channel-mixing MLP; ``token_ratio=0.5`` with ``mlp_ratio=4``
    are the paper's D_S = D/2, D_C = 4D (lucidrains/mlp-mixer-pytorch swaps the two).
    """

    rope = None
    cls_token = False
    fixed_tokens = True
    query_pool = False

    def __init__(
        self,
        dim: int,
        *,
        tokens_hw: tuple[int, int],
        prefix: int = 0,
        token_ratio: float = 0.5,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not token_ratio > 0:
            raise ValueError(f"token_ratio must be positive, got {token_ratio!r}")
        self.tokens = tokens_hw[0] * tokens_hw[1]
        hidden = max(1, round(self.tokens * token_ratio))
        self.net = nn.Sequential(
            nn.Linear(self.tokens, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, self.tokens),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor, hw=None) -> torch.Tensor:
        if x.shape[1] != self.tokens:
            raise ValueError(
                f"mlp_mixer was built for {self.tokens} tokens and got {x.shape[1]}; build the "
                "model at this resolution (its token weights have a fixed size)"
            )
        return self.net(x.transpose(1, 2)).transpose(1, 2)  # (B, N, D) via (B, D, N)
