"""Message wording is the product: one pinned example for every kind of violation."""

import pytest
import torch
from torch import nn

from aimespec import AimeConfig, ContractViolation, checked, checking, resolve
from aimespec.core.validate import CallChecker
from aimespec.runtime.hold import make_result

CFG = AimeConfig()


def _messages(name, arguments, result):
    checker = CallChecker(resolve(name), CFG)
    return [v.message for v in checker.check_inputs(arguments) + checker.check_outputs(result)]


def test_shape_message_names_component_argument_symbolic_concrete_got_and_bindings():
    result = make_result("DPGMMPrior.forward", CFG, 8, 1)
    assert _messages("DPGMMPrior.forward", {"h": torch.randn(8, 512)}, result) == [
        "DPGMMPrior.forward: h expected [B, hidden_dim+context_dim] = [8, 768], got [8, 512] "
        "(B=8 hidden_dim=512 context_dim=256)"
    ]


def test_config_bound_message():
    result = {"mu": torch.randn(8, 32), "logvar": torch.randn(8, 32)}
    assert _messages("VAEEncoder.forward", {"x": torch.rand(8, 3, 64, 64), "context": torch.randn(8, 256)}, result) == [
        "VAEEncoder.forward: mu expected [B, D] = [8, 36], got [8, 32] (B=8 D=36)",
        "VAEEncoder.forward: logvar expected [B, D] = [8, 36], got [8, 32] (B=8 D=36)",
    ]


def test_rank_message():
    out = make_result("SlotAttention.forward", CFG, 8, 1)
    assert _messages("SlotAttention.forward", {"x": torch.randn(8, 64, 21, 21)}, out) == [
        "SlotAttention.forward: x expected 3 dims [B, N, attention_dim] = [8, 441, 64], got 4 dims "
        "[8, 64, 21, 21] (B=8 N=441 attention_dim=64)"
    ]


def test_dtype_message():
    assert _messages("VQPTTokenizer.decode", {"tokens": torch.zeros(2, 16, 8, 8)}, torch.rand(2, 16, 3, 64, 64)) == [
        "VQPTTokenizer.decode: tokens expected an integer tensor [B, T, H_t, W_t], got torch.float32"
    ]


def test_type_and_missing_messages():
    assert _messages("VAEEncoder.forward", {"x": torch.rand(2, 3, 64, 64), "context": torch.randn(2, 256)},
                     {"mu": torch.randn(2, 36)}) == [
        "VAEEncoder.forward: logvar is missing from the returned mapping (expected [B, D] = [2, 36])"
    ]
    assert _messages("SlotAttention.forward", {"x": torch.randn(2, 441, 64)}, torch.randn(2, 4, 64)) == [
        "SlotAttention.forward: return expected a tuple of 2 (slots, attn), got Tensor"
    ]


def test_value_messages():
    result = make_result("DPGMMPrior.forward", CFG, 2, 1)
    result["pi"] = torch.full((2, 15), 0.1)
    assert _messages("DPGMMPrior.forward", {"h": torch.randn(2, 768)}, result) == [
        "DPGMMPrior.forward: pi must sum to 1 over K, but the largest |sum - 1| is 0.5"
    ]
    enc = make_result("VQPTTokenizer.encode", CFG, 2, 16)
    enc = (torch.full_like(enc[0], 2000), torch.tensor(float("nan")), torch.tensor(0.5))
    assert _messages("VQPTTokenizer.encode", {"video": torch.rand(2, 16, 3, 64, 64)}, enc) == [
        "VQPTTokenizer.encode: tokens must hold indices in [0, num_codes-1] = [0, 1023], but spans [2000, 2000]",
        "VQPTTokenizer.encode: vq_loss must be finite, but is [nan]",
        "VQPTTokenizer.encode: perplexity must lie in [1, inf], but spans [0.5, 0.5]",
    ]


class _Prior(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    @checked("DPGMMPrior.forward")
    def forward(self, h, n_samples=10):
        return make_result("DPGMMPrior.forward", self.cfg, h.shape[0], 1, overrides={"n_samples": n_samples})


def test_contract_violation_exception_lists_every_violation():
    message = (r"^DPGMMPrior\.forward: h expected \[B, hidden_dim\+context_dim\] "
               r"= \[8, 768\], got \[8, 512\] \(B=8 hidden_dim=512 context_dim=256\)$")
    with pytest.raises(ContractViolation, match=message):
        _Prior(CFG)(torch.randn(8, 512))
    with checking("full"), pytest.raises(ContractViolation) as info:
        _Prior(CFG)(torch.randn(8, 512, 1))
    assert isinstance(info.value, TypeError)
    assert str(info.value).startswith("DPGMMPrior.forward: h expected 2 dims")


def test_an_unknown_contract_name_is_one_sentence():
    from aimespec.core.errors import ContractNotFound

    with pytest.raises(ContractNotFound, match=r"^no contract named 'DPGMMPriorr'; known: VQPTTokenizer, "):
        resolve("DPGMMPriorr.forward")
    with pytest.raises(LookupError, match=r"^VQPTTokenizer has several methods; name one: VQPTTokenizer.encode, "):
        resolve("VQPTTokenizer")
