"""The fixed twin of `reward_head.py`: one logit per bin (`cfg.n_bins`), not one per bin edge.

    aimespec check examples/reward_head_fixed.py        # every contract holds

The rest is `reward_head.py` line for line (a model file stands on its own).

Four steps, each with the public API only (nothing here imports a private module):
1. a config with the new field (`RewardConfig.n_bins`), found by `aimespec check` in this file;
2. a symbol bound to it (`aimespec.symbol("n_bins")`), checked like `D`;
3. the contract, written with the seed's symbols and the new one, plus a value invariant;
4. an implementation, found because its name is the contract's name.
"""

from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

import aimespec


class RewardConfig(aimespec.AimeConfig):
    """The seed's config plus the reward head's own sizes (`--set n_bins=101` works)."""

    n_bins: int = 51  # reward bins of the categorical (two-hot) reward distribution
    reward_hidden: int = 64  # width of the reward head's hidden layer


aimespec.symbol("n_bins", meaning="Reward bins", description="Bins of the categorical reward distribution")


class RewardPrediction(NamedTuple):
    probs: Float[Tensor, "B n_bins"]  # a distribution over the reward bins
    reward: Float[Tensor, "B"]  # its expected reward


class RewardHeadContract(aimespec.Contract, name="RewardHead"):
    """r(h_t, z_t): a categorical distribution over `n_bins` reward bins and its mean."""

    pillar = "reward"

    @aimespec.invariants(aimespec.Simplex("probs", over=("n_bins",)))
    def forward(self, h: Float[Tensor, "B hidden_dim"], z: Float[Tensor, "B D"]) -> RewardPrediction:
        """h_t [B, hidden_dim], z_t [B, D] -> (probs [B, n_bins], reward [B])."""
        ...


class RewardHead(nn.Module):
    """Bins spread evenly over [-1, 1]; the head predicts a probability for each bin."""

    def __init__(self, cfg: RewardConfig) -> None:
        super().__init__()
        self.register_buffer("edges", torch.linspace(-1.0, 1.0, cfg.n_bins + 1))  # n_bins + 1 edges
        centres = (self.edges[1:] + self.edges[:-1]) / 2
        self.register_buffer("centres", centres)
        self.net = nn.Sequential(
            nn.Linear(cfg.hidden_dim + cfg.latent_dim, cfg.reward_hidden),
            nn.ELU(),
            nn.Linear(cfg.reward_hidden, cfg.n_bins),  # one logit per bin
        )

    def forward(self, h: Tensor, z: Tensor) -> RewardPrediction:
        probs = torch.softmax(self.net(torch.cat([h, z], dim=-1)), dim=-1)
        reward = (probs * self.centres).sum(dim=-1)
        return RewardPrediction(probs, reward)
