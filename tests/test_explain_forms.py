"""Every message form `--explain` reads: the first reading of every number, pinned at two non-default configs.

The texts are real (raised by torch, einops, jaxtyping and aimespec's own checker at each config's sizes);
each expectation is written in symbols, so it says what the number *is*, whatever its value.
"""

import beartype
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Float, jaxtyped
from torch import Tensor, nn

from aimespec import AimeConfig, ContractViolation, resolve
from aimespec.core.symbols import symbol_values
from aimespec.core.validate import CallChecker
from aimespec.explain.engine import explain

CONFIGS = {
    "a": dict(batch_size=12, sequence_length=11, hidden_dim=40, num_latent_channels_perceiver=24, latent_dim=10,
              max_components=7, action_dim=5, attention_resolution=9, attention_dim=20, num_semantic_slots=6,
              input_dim=32),
    "b": dict(batch_size=5, sequence_length=9, hidden_dim=80, num_latent_channels_perceiver=48, latent_dim=14,
              max_components=11, action_dim=7, attention_resolution=13, attention_dim=40, input_dim=64),
}


def raised(fn) -> str:
    try:
        fn()
    except Exception as exc:  # the real text, whatever type torch raises
        return str(exc)
    raise AssertionError("expected an error")


def _matmul(v):
    layer = nn.Linear(v["hidden_dim"] + v["context_dim"], 2 * v["K"] * v["D"])
    return raised(lambda: layer(torch.zeros(v["B"], v["hidden_dim"]))), ["B", "hidden_dim",
                                                                           "hidden_dim + context_dim", "2*K*D"]


def _broadcast(v):
    feats, attn = torch.zeros(v["B"], 8, v["H"] // 2, v["H"] // 2), torch.zeros(v["B"], 1, v["H_att"], v["H_att"])
    return raised(lambda: feats * attn), ["H/2", "H_att"]


def _view(v):
    flat = torch.zeros(v["B"] * v["T_enc"] * v["H_t"] * v["W_t"])
    return raised(lambda: flat.view(v["B"], v["T"], v["H_t"], v["W_t"])), ["B", "T", "H_t", "B*T_enc*H_t*W_t"]


def _cat(v):
    return raised(lambda: torch.cat([torch.zeros(v["B"], 2), torch.zeros(v["B"] * v["T"], 2)], dim=1)), ["B", "B*T"]


def _rnn_batch(v):
    lstm = nn.LSTM(v["D"], v["hidden_dim"], batch_first=True)
    h = torch.zeros(1, v["B"], v["hidden_dim"])
    return raised(lambda: lstm(torch.zeros(v["B"] * v["T"], 1, v["D"]), (h, h))), ["B*T", "B"]


def _hidden(v):
    lstm = nn.LSTM(v["D"], v["hidden_dim"])
    h = torch.zeros(1, v["B"], v["hidden_dim"])
    return raised(lambda: lstm(torch.zeros(1, v["B"] * v["T"], v["D"]), (h, h))), ["B*T", "hidden_dim", "B"]


def _loss_batch(v):
    logits, target = torch.zeros(v["B"] * v["T"], v["K"]), torch.zeros(v["B"], dtype=torch.long)
    return raised(lambda: F.cross_entropy(logits, target)), ["B*T", "B"]


def _conv_rank(v):
    conv = nn.Conv2d(3, 4, 3)
    return raised(lambda: conv(torch.zeros(v["B"], v["T"], 3, v["H"], v["H"]))), ["B", "T", "C", "H"]


def _einsum_size(v):
    q, feats = torch.zeros(v["B"], v["K_slots"], v["attention_dim"]), torch.zeros(v["B"], v["H_att"], v["W_att"])
    return raised(lambda: torch.einsum("bkd,bnd->bkn", q, feats)), ["H_att", "attention_dim"]


def _layernorm(v):
    fmap = torch.zeros(v["B"], v["attention_dim"], v["H_att"], v["W_att"])
    return raised(lambda: nn.LayerNorm(v["attention_dim"])(fmap)), ["attention_dim", "B", "H_att"]


def _channels(v):
    conv = nn.Conv2d(v["attention_dim"], 8, 1)
    return raised(lambda: conv(torch.zeros(v["B"], v["C"], v["H"], v["H"]))), ["attention_dim", "C", "B", "H"]


def _input_size(v):
    lstm = nn.LSTM(v["D"] + v["context_dim"] + v["A"], v["hidden_dim"])
    return raised(lambda: lstm(torch.zeros(1, v["B"], v["D"] + v["context_dim"]))), [
        "D + context_dim + A", "D + context_dim"]


def _einops_mismatch(v):
    tokens = torch.zeros(v["B"], v["T_enc"] * v["H_t"] * v["W_t"])
    return raised(lambda: rearrange(tokens, "b (t h w) -> b t h w", t=v["T"], h=v["H_t"], w=v["W_t"])), [
        "B", "T_enc*H_t*W_t", "T*H_t*W_t"]


def _einops_info(v):
    frames = torch.zeros(v["B"] * v["T"], v["H_t"], v["W_t"], v["C"])
    return raised(lambda: rearrange(frames, "b t h w c -> b t c h w", b=v["B"], t=v["T"])), ["b*t", "H_t", "C"]


def _contract(v):
    checker = CallChecker(resolve("DPGMMPrior.forward"), _CFG[0])
    violations = checker.check_inputs({"h": torch.zeros(v["B"], v["hidden_dim"])})
    return str(ContractViolation(violations)), ["B", "hidden_dim + context_dim", "hidden_dim"]


def _torch_size(v):
    return f"x has shape torch.Size([{v['B']}, {v['hidden_dim'] + v['context_dim']}])", [
        "B", "hidden_dim + context_dim"]


def _jaxtyping(v):
    width = v["hidden_dim"] + v["context_dim"]

    @jaxtyped(typechecker=beartype.beartype)
    def prior(h: Float[Tensor, f"B {width}"]) -> Float[Tensor, "B"]:
        return h[:, 0]

    return raised(lambda: prior(torch.zeros(v["B"], v["hidden_dim"]))), ["hidden_dim", "hidden_dim + context_dim"]


def _einsum_ellipsis(v):
    q, fmap = torch.zeros(v["B"], v["K_slots"], v["attention_dim"]), torch.zeros(v["B"], v["attention_dim"], 2, 2)
    return raised(lambda: torch.einsum("...kd,...nd->...kn", q, fmap)), ["attention_dim", "B"]


def _target_size(v):
    probs, target = torch.rand(v["B"], v["K"]), torch.rand(v["B"], v["K_slots"])
    return raised(lambda: F.binary_cross_entropy(probs, target)), ["B", "K", "K_slots"]


def _seed_rank(v):
    return (f"Expected 3D tensor [B, N, D], got 4D [{v['B']}, {v['attention_dim']}, {v['H_att']}, {v['W_att']}]",
            ["B", "attention_dim", "H_att"])


FORMS = {f.__name__.lstrip("_"): f for f in (
    _einsum_ellipsis, _target_size, _seed_rank,
    _matmul, _broadcast, _view, _cat, _rnn_batch, _hidden, _loss_batch, _conv_rank, _einsum_size, _layernorm,
    _channels, _input_size, _einops_mismatch, _einops_info, _contract, _torch_size, _jaxtyping)}
_CFG: list[AimeConfig] = []


def _value(expr: str, v: dict[str, int]) -> int:
    v = {**v, "b": v["B"], "t": v["T"]}  # einops' own names
    total = 0
    for term in expr.split(" + "):
        prod = 1
        for atom in term.split("*"):
            atom = atom.strip("()")
            prod *= int(atom) if atom.isdigit() else v[atom[0]] // int(atom[2:]) if "/" in atom else v[atom]
        total += prod
    return total


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("form", sorted(FORMS))
def test_the_first_reading_of_every_number(form, config):
    cfg = AimeConfig(**CONFIGS[config])
    _CFG[:] = [cfg]
    v = symbol_values(cfg)
    text, expected = FORMS[form](v)
    values = [_value(e, v) for e in expected]
    assert len(set(values)) == len(values), (form, config, dict(zip(expected, values, strict=True)))
    numbers = explain(text, cfg).numbers
    for expr, n in zip(expected, values, strict=True):
        assert str(n) in numbers, (text, n, numbers)
        first = numbers[str(n)][0]
        assert first.split(" = ")[0] == expr, (text, n, numbers[str(n)])
