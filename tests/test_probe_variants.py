"""Second variants of the probes' bug kinds, written apart from examples/probes/: the same kind of bug
in another component or another construct is caught with its kind, and its corrected twin passes."""

import textwrap

import pytest

from aimespec import AimeConfig, check

CFG = AimeConfig()

# A slot attention (x [B, N, attention_dim] -> slots, attn); PRE is what it does to x first.
SLOTS = '''
import torch
from torch import nn


class SlotAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dim = cfg.attention_dim
        self.n_slots = cfg.num_semantic_slots
        self.slots = nn.Parameter(torch.randn(1, self.n_slots, dim) * 0.1)
        self.rnn = nn.GRU(dim, dim{gru})
        self.q = nn.Linear({width}, dim)
        self.k = nn.Linear(dim, dim)

    def forward(self, x, seed_slots=None):
        b = x.shape[0]
        {pre}
        slots = seed_slots if seed_slots is not None else self.slots.expand(b, -1, -1)
        attn = torch.einsum("bkd,bnd->bkn", self.q(slots), self.k(x)).softmax(dim=1)
        updates = torch.einsum("bkn,bnd->bkd", attn / attn.sum(-1, keepdim=True), x)
        return slots + updates, attn
'''
PLAIN = {"gru": ", batch_first=True", "width": "dim", "pre": "x = x"}

def _file(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(("bug", "kind"), [
    ({"gru": "", "pre": "x = self.rnn(x)[0]"}, "batch"),  # an nn.GRU left at batch_first=False
    ({"pre": "x = x - x.mean(dim=0, keepdim=True)"}, "batch"),  # a statistic over the batch axis
    ({"width": "64"}, "config"),  # the default attention_dim written as a number
])
def test_a_second_variant_of_each_slot_attention_bug_is_caught_and_its_twin_passes(tmp_path, bug, kind):
    fixed = {**PLAIN, "pre": "x = self.rnn(x)[0]"} if "gru" in bug else PLAIN
    bad = check(_file(tmp_path, "bad.py", SLOTS.format(**{**PLAIN, **bug})), CFG, examples=0)
    assert not bad.ok
    kinds = {f.violation.kind for f in bad.findings}
    assert kind in kinds, kinds
    good = check(_file(tmp_path, "good.py", SLOTS.format(**fixed)), CFG, examples=0)
    assert good.ok, [f.violation.message for f in good.findings]


def test_a_batch_first_gru_is_named_as_the_likely_cause(tmp_path):
    bad = check(_file(tmp_path, "bad.py", SLOTS.format(**{**PLAIN, "gru": "", "pre": "x = self.rnn(x)[0]"})),
                CFG, examples=0)
    (v,) = [f.violation for f in bad.findings if f.violation.kind == "batch"]
    assert "batch_first" in v.probe["likely_cause"] and "rnn" in v.probe["likely_cause"]


FOLD = "x = self.k(x.reshape(-1, x.shape[-1])).view({order}, -1){turn}"  # [B*N, D] back to [B, N, D]


def test_a_wrong_order_fold_of_positions_is_caught_and_the_right_order_passes(tmp_path):
    """`[B*N, D]` (b-major) read back as `[N, B, D]` and transposed: every example gets others' positions."""
    wrong = FOLD.format(order="x.shape[1], b", turn=".transpose(0, 1)")
    bad = check(_file(tmp_path, "bad.py", SLOTS.format(**{**PLAIN, "pre": wrong})), CFG, examples=0)
    assert "batch" in {f.violation.kind for f in bad.findings}
    right = FOLD.format(order="b, x.shape[1]", turn="")
    good = check(_file(tmp_path, "good.py", SLOTS.format(**{**PLAIN, "pre": right})), CFG, examples=0)
    assert good.ok, [f.violation.message for f in good.findings]
