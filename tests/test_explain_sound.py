"""Explanations you can trust: messages from models that have nothing to do with AIME get no unsound reading.

The dozen messages are real (plain torch: convs, linears, views, einsum, LSTM, embedding, cross-entropy, ...);
every decomposition `--explain` lists for them, at the default and at another config, is checked against
SPEC's soundness rule by a checker written here from the rule, not from the algebra's code.
"""

import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from aimespec import AimeConfig
from aimespec.core.symbols import SYMBOLS, Kind
from aimespec.explain.algebra import CONCATENATED
from aimespec.explain.engine import explain

KIND = {s.name: s.kind for s in SYMBOLS}
GRIDS = {"H": "img", "W": "img", "H_att": "att", "W_att": "att", "H_t": "tok", "W_t": "tok"}


def raised(fn) -> str:
    try:
        fn()
    except Exception as exc:
        return str(exc)
    raise AssertionError("expected an error")


UNRELATED = {  # a small CNN / MLP / seq2seq / classifier, written without any thought of AIME
    "conv channels": lambda: nn.Conv2d(3, 16, 3)(torch.zeros(2, 1, 28, 28)),
    "linear": lambda: nn.Linear(784, 128)(torch.zeros(32, 785)),
    "view inferred": lambda: torch.zeros(10, 57).view(5, -1, 4),
    "einsum": lambda: torch.einsum("ij,jk->ik", torch.zeros(3, 34), torch.zeros(35, 5)),
    "lstm input": lambda: nn.LSTM(10, 20)(torch.zeros(5, 3, 12)),
    "lstm hidden": lambda: nn.LSTM(10, 20)(torch.zeros(5, 3, 10), (torch.zeros(1, 4, 20), torch.zeros(1, 4, 20))),
    "embedding": lambda: nn.Embedding(100, 9)(torch.tensor([150])),
    "cross entropy": lambda: F.cross_entropy(torch.zeros(7, 10), torch.zeros(9, dtype=torch.long)),
    "broadcast": lambda: torch.zeros(4, 57) + torch.zeros(4, 34),
    "cat": lambda: torch.cat([torch.zeros(2, 3), torch.zeros(5, 4)]),
    "conv1d rank": lambda: nn.Conv1d(1, 4, 3)(torch.zeros(2, 3, 5, 7)),
    "layernorm": lambda: nn.LayerNorm(57)(torch.zeros(3, 34)),
    "batchnorm": lambda: nn.BatchNorm1d(57)(torch.zeros(3, 34)),
    "gru": lambda: nn.GRU(9, 17)(torch.zeros(4, 2, 9), torch.zeros(1, 3, 17)),
    "view numel": lambda: torch.zeros(6, 100).view(12, 51),
}
TEXTS = {name: raised(fn) for name, fn in UNRELATED.items()}
OTHER = AimeConfig(batch_size=5, sequence_length=9, hidden_dim=80, latent_dim=14, max_components=11, action_dim=7,
                   attention_resolution=13, attention_dim=40)


def _atom(name: str) -> tuple[str, str | None, str]:
    """(kind, grid, axis) of one written atom: `hidden_dim`, `(K-1)`, `(H/4)`."""
    name = name.strip("()")
    if name == "K-1":
        return "count", None, ""
    if "/" in name:
        base, _ = name.split("/")
        return "spatial", f"stage{name[1:]}", base.lower()
    kind = KIND[name]
    if name == "N":
        return "spatial", "att", "hw"
    if kind is Kind.SPATIAL:
        return "spatial", GRIDS[name], name[0].lower()
    return {Kind.CODEBOOK: "count", Kind.CHANNEL: "width"}.get(kind, kind.value), None, ""


def sound(reading: str) -> bool:
    """SPEC's rule: products of axes flattened together; sums only of widths the model concatenates."""
    text = reading.split(" = ")[0]
    terms = text.split(" + ")
    if len(terms) > 1:
        names = [t.strip() for t in terms]
        return all("*" not in t for t in names) and any(set(names) <= set(g) for g in CONCATENATED)
    atoms = [a for a in text.split("*") if not a.isdigit()]
    factors = [int(a) for a in text.split("*") if a.isdigit()]
    if any(f > 4 for f in factors):
        return False
    parsed = [_atom(a) for a in atoms]
    kinds = [k for k, _, _ in parsed]
    if any(kinds.count(k) > 1 for k in ("batch", "time", "count", "width")):
        return False
    space = [(g, axis) for k, g, axis in parsed if k == "spatial"]
    if len(space) == 2:
        return space[0][0] == space[1][0] and {space[0][1], space[1][1]} == {"h", "w"}
    return len(space) <= 1


def test_the_checker_rejects_what_the_issue_measured():
    for bad in ("H_t + W_t", "B + H_t", "H_att + W_att", "D + H_att", "T_enc + (H/2)", "A + C", "H*H_t",
                "(H/2) + H_t"):
        assert not sound(bad), bad
    for good in ("hidden_dim + context_dim", "D + context_dim + A", "C + context_dim", "B*T", "H*W",
                 "B*attention_dim*H_att", "2*K*D", "K-1", "B*T_enc*H_t*W_t", "(H/4)*(W/4)"):
        assert sound(good), good


@pytest.mark.parametrize("cfg", [AimeConfig(), OTHER], ids=["default", "other"])
@pytest.mark.parametrize("name", sorted(TEXTS))
def test_unrelated_messages_get_no_unsound_reading(name, cfg):
    result = explain(TEXTS[name], cfg)
    for n, readings in result.numbers.items():
        for reading in readings:
            if "(the message's own" not in reading:
                assert sound(reading), (name, n, reading)
    for n in (n for n, r in result.numbers.items() if not r):  # a number with no reading is said to be no size
        assert f"{n} is no size of this config" in result.explanation, (name, n, result.explanation)


@pytest.mark.parametrize(("name", "numbers"), [
    ("broadcast", {"57": [], "34": []}), ("layernorm", {"57": [], "34": []}), ("einsum", {"34": [], "35": []}),
])
def test_sizes_of_no_config_have_no_reading(name, numbers):
    result = explain(TEXTS[name], AimeConfig())
    for n, expected in numbers.items():
        assert result.numbers[n] == expected
        assert f"{n} is no size of this config" in result.explanation


def test_no_documented_error_is_claimed_for_unrelated_models():
    claimed = {name: explain(text, AimeConfig()).matches for name, text in TEXTS.items()}
    assert not any(m and m[0].score >= 0.8 for m in claimed.values()), claimed


def test_an_inferred_axis_is_not_a_size():
    result = explain("shape '[8, -1, 4608]' is invalid for input of size 6718464", AimeConfig())
    assert "-1" not in result.numbers and "-36864" not in result.explanation
    assert "-1 (inferred)" in result.explanation and "6718464 / 36864 = 182.25 is not whole" in result.explanation


def test_a_number_the_message_states_is_read_as_the_message_says():
    text = (' Error while processing rearrange-reduction pattern "b t h w c -> b t c h w".\n Input tensor shape: '
            "torch.Size([40, 16, 16, 4]). Additional info: {'b': 8, 't': 5}.\n Wrong shape: expected 5 dims. "
            "Received 4-dim tensor.")
    result = explain(text, AimeConfig())
    assert result.numbers["40"][0] == "b*t = 8*5 (the message's own sizes)"
    assert result.numbers["40"][1] == "B*T = 8*5" and (result.batch, result.seq_len) == (8, 5)
    assert result.matches[0].error == 1  # b t ... met (b t) ...: a flattened batch
    assert not any("+" in r for rs in result.numbers.values() for r in rs)


def test_an_rnn_state_reads_every_axis_and_names_a_swap():
    result = explain("Expected hidden[0] size (1, 6, 128), got [6, 1, 128]", AimeConfig())
    assert set(result.numbers) == {"1", "6", "128"} and result.numbers["128"]
    assert "axes are swapped" in result.explanation and not result.matches


@given(st.integers(1, 10**7))
def test_any_number_reads_soundly_or_not_at_all(n):
    result = explain(f"The size of tensor a ({n}) must match the size of tensor b (1) at non-singleton dimension 1",
                     AimeConfig())
    assert all(sound(r) for r in result.numbers[str(n)])


def test_large_numbers_stay_cheap_and_have_no_reading():
    result = explain(f"shape '[{10**11}, 3]' is invalid for input of size {3 * 10**11 + 1}", AimeConfig())
    assert result.numbers[str(10**11)] == [] and result.numbers[str(3 * 10**11 + 1)] == []


@pytest.mark.parametrize("text", [re.sub(r"\d+", "7", t) for t in list(TEXTS.values())[:3]])
def test_explain_runs_on_mangled_texts(text):
    assert explain(text, AimeConfig()).explanation


def test_the_concatenations_are_the_contracts_own():
    """Every `+` the contracts write is a concatenation the algebra knows (and it knows no sum besides)."""
    from aimespec.core.contract import all_methods

    written = {tuple(t.strip() for t in d.split("+")) for mc in all_methods()
               for leaf in mc.input_leaves() + mc.output_leaves() for d in leaf.dims if "+" in d}
    assert written and written <= set(CONCATENATED)
    documented = {("C", "context_dim")}  # SPEC's own example: an image with the context broadcast over it
    assert set(CONCATENATED) == written | documented
