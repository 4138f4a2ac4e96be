"""Hypothesis strategies that draw valid inputs for any contract over random B and T.

    from hypothesis import given
    from aimespec import strategies as ast

    @given(ast.inputs("DPGMMPrior.forward", cfg))
    def test_my_prior(call):
        out = my_prior(*call.args)
        assert aimespec.hold(my_prior, ...) == []
"""

from hypothesis import strategies as st

from aimespec.core.config import AimeConfig
from aimespec.core.contract import resolve
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


__all__ = ["batch_sizes", "inputs", "seq_lens"]
