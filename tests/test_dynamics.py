"""The per-step LSTM: contract, the time axis it adds, equivalence with nn.LSTM over a sequence."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import aimespec
from aimespec import AimeConfig, ContractViolation
from contracts.dynamics import HiddenState, LSTMOutput
from reference_model.dynamics import LSTMLayer

SMALL = AimeConfig.small()
torch.manual_seed(0)
LSTM = LSTMLayer(SMALL)


@given(B=st.integers(1, 8), seed=st.integers(0, 2**16), layers=st.integers(1, 3))
def test_lstm_holds_its_contract(B: int, seed: int, layers: int) -> None:
    cfg = SMALL.replace(lstm_layers=layers)
    layer = LSTM if layers == 1 else LSTMLayer(cfg)
    assert aimespec.hold(layer, "LSTMLayer.forward", cfg, B, 1, seed) == []
    x = torch.randn(B, cfg.lstm_input_dim, generator=torch.Generator().manual_seed(seed))
    out = layer(x, layer.initial_state(B, x))
    assert isinstance(out, LSTMOutput)
    assert out.output.shape == (B, cfg.hidden_dim)
    assert out.state.h_n.shape == out.state.c_n.shape == (layers, B, cfg.hidden_dim)
    assert torch.equal(out.output, out.state.h_n[-1])  # the step's output is the top layer's h


def test_initial_state_is_zeros_like_the_input() -> None:
    x = torch.randn(3, SMALL.lstm_input_dim, dtype=torch.float64)
    state = LSTM.initial_state(3, x)
    assert isinstance(state, HiddenState)
    for t in state:
        assert t.shape == (1, 3, SMALL.hidden_dim) and t.dtype == torch.float64 and not t.any()


def test_stepping_equals_nn_lstm_over_the_sequence() -> None:
    cfg = SMALL.replace(lstm_layers=2)
    layer = LSTMLayer(cfg)
    reference = nn.LSTM(cfg.lstm_input_dim, cfg.hidden_dim, num_layers=2, batch_first=True)
    reference.load_state_dict(layer.state_dict())
    B, T = 3, 5
    xs = torch.randn(B, T, cfg.lstm_input_dim)
    state = layer.initial_state(B, xs)
    outs = []
    for t in range(T):
        out, state = layer(xs[:, t], state)
        outs.append(out)
    ref_out, (ref_h, ref_c) = reference(xs)
    torch.testing.assert_close(torch.stack(outs, dim=1), ref_out)
    torch.testing.assert_close(state.h_n, ref_h)
    torch.testing.assert_close(state.c_n, ref_c)


def test_plain_nn_lstm_rejects_the_seeds_call_and_the_layer_accepts_it() -> None:
    x = torch.randn(2, SMALL.lstm_input_dim)
    state = LSTM.initial_state(2, x)
    plain = nn.LSTM(SMALL.lstm_input_dim, SMALL.hidden_dim)
    with pytest.raises(RuntimeError, match="hx and cx should also be 2-D"):
        plain(x, tuple(state))
    assert LSTM(x, state).output.shape == (2, SMALL.hidden_dim)


def test_flattened_batch_is_error_1() -> None:
    B, T = 2, 4
    x = torch.randn(B * T, SMALL.lstm_input_dim)
    state = LSTM.initial_state(B, x)
    with pytest.raises(ContractViolation, match=r"input expected \[B, D\+context_dim\+A\] = \[2, 46\], got \[8, 46\]"):
        LSTM(x, state)


@pytest.mark.slow
def test_lstm_at_the_default_config(cfg: AimeConfig) -> None:
    layer = LSTMLayer(cfg)
    x = torch.randn(8, 298)
    out = layer(x, layer.initial_state(8, x))
    assert out.output.shape == (8, 512)
    assert out.state.h_n.shape == out.state.c_n.shape == (1, 8, 512)
    assert aimespec.hold(layer, "LSTMLayer.forward", cfg, 8, 16, 0) == []
