"""Hypothesis strategies that draw valid inputs for any contract over random B and T, and configs.

    from hypothesis import given, strategies as st
    from aimespec import strategies as ast

    @given(ast.inputs("DPGMMPrior.forward", cfg))
    def test_my_prior(call):
        out = my_prior(*call.args)

    @given(cfg=ast.configs(RewardConfig.small(), n_bins=st.integers(2, 64)), B=ast.batch_sizes(1, 8))
    def test_reward_head(cfg, B):                 # a size written as a number fails at some n_bins
        assert aimespec.hold(RewardHead, "RewardHead.forward", cfg, B=B) == []
"""

from typing import Any

from hypothesis import reject
from hypothesis import strategies as st

from aimespec.core.config import AimeConfig
from aimespec.core.contract import resolve
from aimespec.core.errors import ConfigError
from aimespec.runtime.hold import CallInputs, make_inputs


def batch_sizes(low: int = 1, high: int = 16) -> st.SearchStrategy[int]:
    return st.integers(low, high)


def seq_lens(low: int = 1, high: int = 32) -> st.SearchStrategy[int]:
    return st.integers(low, high)


def inputs(
    contract: str,
    cfg: AimeConfig | None = None,
    *,
    batch: st.SearchStrategy[int] | None = None,
    seq_len: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[CallInputs]:
    """Valid positional inputs for `contract` (`"SlotAttention.forward"`) at random B and T.

    Each draw is a `CallInputs`: `.args` to call with, `.batch`, `.seq_len`, `.seed`.
    """
    cfg = cfg if cfg is not None else AimeConfig()
    method = resolve(contract)
    batch = batch if batch is not None else batch_sizes()
    seq_len = seq_len if seq_len is not None else seq_lens()

    @st.composite
    def draw(d: st.DrawFn) -> CallInputs:
        B, T = d(batch), d(seq_len)
        seed = d(st.integers(0, 2**31 - 1))
        return make_inputs(method, cfg, B, T, seed)

    return draw()


def configs(base: AimeConfig | None = None, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[AimeConfig]:
    """Configs equal to `base` (of its class: a user's subclass too) but for `fields`, each drawn from its strategy.

    `configs(RewardConfig.small(), n_bins=st.integers(2, 64), latent_dim=st.integers(1, 16))`.
    Combinations the config refuses (an input_dim the encoder cannot reach) are not drawn.
    """
    base = base if base is not None else AimeConfig()
    for name in fields:
        base.replace(**{name: getattr(base, name)})  # an unknown field fails here, naming it, not at each draw

    @st.composite
    def draw(d: st.DrawFn) -> AimeConfig:
        changes = {name: d(strategy) for name, strategy in fields.items()}
        try:
            return base.replace(**changes)
        except ConfigError:
            reject()

    return draw()


__all__ = ["batch_sizes", "configs", "inputs", "seq_lens"]
