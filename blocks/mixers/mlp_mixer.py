"""MLP-Mixer token mixing (Tolstikhin et al. 2021, google-research/vision_transformer)."""

from __future__ import annotations

import torch

from blocks.mixers._common import Mixer
from blocks.model import MLP
from blocks.registry import MIXERS, register


@register(MIXERS, "mlp_mixer")
class TokenMLP(Mixer):
    """MLP-Mixer: an MLP across tokens (hidden D_S = token_hidden, or token_ratio x N), O(N^2 D r).

    The token weights are (N, D_S), so the layer is built for one token count. The paper
    states D_S as a width (Mixer-B/16: D_S = 384 for N = 196 tokens, D = 768): give it as
    ``token_hidden``. Without it D_S = ``token_ratio`` x N, a share of the token count
    (0.5 gives 98 for N = 196, not the paper's 384). The block's own MLP is the
    channel-mixing MLP (D_C = mlp_ratio x D).
    """

    def __init__(
        self,
        dim: int,
        *,
        tokens_hw: tuple[int, int],
        prefix: int = 0,
        token_ratio: float = 0.5,
        token_hidden: int = 0,  # D_S as a width; 0: token_ratio x N
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not token_ratio > 0:
            raise ValueError(f"token_ratio must be positive, got {token_ratio!r}")
        self.tokens = tokens_hw[0] * tokens_hw[1]
        if token_hidden < 0:
            raise ValueError(f"token_hidden must be positive (or 0: token_ratio x N), got {token_hidden!r}")
        hidden = token_hidden or max(1, round(self.tokens * token_ratio))
        # The channel MLP's layers, applied across tokens (state_dict keys net.0, net.3).
        self.net = MLP(self.tokens, hidden, dropout)

    def forward(self, x: torch.Tensor, hw=None) -> torch.Tensor:
        if x.shape[1] != self.tokens:
            raise ValueError(
                f"mlp_mixer was built for {self.tokens} tokens and got {x.shape[1]}; build the "
                "model at this resolution (its token weights have a fixed size)"
            )
        return self.net(x.transpose(1, 2)).transpose(1, 2)  # (B, N, D) via (B, D, N)
