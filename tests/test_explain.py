"""`diagnose --explain`: numbers in the config's symbols, documented errors matched by roles, at any config."""

import json
import traceback

import beartype
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from jaxtyping import Float, jaxtyped
from torch import Tensor, nn

from aimespec import AimeConfig, resolve
from aimespec.core.errors import ContractViolation
from aimespec.core.validate import CallChecker
from aimespec.explain.diagnose import diagnose
from aimespec.explain.documented import documented_errors
from aimespec.explain.engine import explain

# A config where no default number survives (B, T, hidden_dim, D, H_att all moved).
OTHER = dict(hidden_dim=256, latent_dim=16, attention_resolution=11, batch_size=4)


def top(text: str, cfg: AimeConfig, **kw) -> int | None:
    matches = explain(text, cfg, **kw).matches
    return matches[0].error if matches else None


# --- the seed's own texts -------------------------------------------------------------------------------
@pytest.mark.parametrize("error", documented_errors(), ids=lambda e: f"error{e.number}")
def test_the_documents_error_texts_rank_their_error_first(error, cfg):
    result = explain(error.document_error, cfg)
    assert result.matches and result.matches[0].error == error.number, result.explanation
    assert result.matches[0].title == error.title
    scores = [m.score for m in result.matches]
    assert scores == sorted(scores, reverse=True)


def test_pinned_decompositions_at_the_default(cfg):
    n4 = explain(documented_errors()[3].document_error, cfg).numbers
    assert n4["768"][0] == "hidden_dim + context_dim = 512 + 256"
    assert n4["512"][0] == "hidden_dim"
    assert n4["1080"][0] == "2*K*D = 2*15*36"
    assert explain(documented_errors()[0].document_error, cfg).numbers["128"][0] == "B*T = 8*16"
    n3 = explain(documented_errors()[2].document_error, cfg).numbers
    assert n3["1024"][0] == "B*T_enc*H_t*W_t = 8*2*8*8"
    assert n3["16"][0] == "T"


def test_a_bare_number_is_still_read_as_hidden_dim_plus_context_dim(cfg):
    numbers = explain("x has shape torch.Size([8, 768])", cfg).numbers
    assert numbers["768"][0].startswith("hidden_dim + context_dim")


def test_ties_are_listed(cfg):
    numbers = explain(documented_errors()[1].document_error, cfg).numbers
    assert numbers["64"][:2] == ["H", "W"] and "attention_dim" in numbers["64"]
    assert numbers["21"][:2] == ["H_att", "W_att"]


def test_decompositions_follow_the_config(cfg):
    other = cfg.replace(**OTHER)
    result = explain("mat1 and mat2 shapes cannot be multiplied (4x512 and 256x480)", other)
    assert result.matches[0].error == 4
    assert result.numbers["512"][0] == "hidden_dim + context_dim = 256 + 256"
    assert result.numbers["480"][0] == "2*K*D = 2*15*16"
    assert result.numbers["4"][0] == "B"


def test_batch_and_seq_len_override_the_config(cfg):
    result = explain("Input batch size 60 doesn't match hidden0 batch size 4", cfg, batch=4, seq_len=15)
    assert result.numbers["60"][0] == "B*T = 4*15"
    assert result.matches[0].error == 1
    assert (result.batch, result.seq_len) == (4, 15)


# --- real messages from diagnose's WRONG code ---------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("changes", [{}, OTHER], ids=["default", "other"])
def test_every_real_message_of_the_wrong_code_ranks_its_error_first(n, changes, cfg):
    cfg = cfg.replace(**changes)
    d = diagnose(n, cfg)
    assert d.raw_error
    assert top(d.raw_error, cfg) == n, explain(d.raw_error, cfg).explanation
    for variant in d.variants:
        if variant["raw_error"]:
            assert top(variant["raw_error"], cfg) == n, variant


@given(
    hidden=st.sampled_from([16, 24, 48, 96]), ctx=st.sampled_from([8, 16, 32]), latent=st.integers(3, 20),
    att=st.integers(2, 15), batch=st.integers(2, 9), seq=st.integers(2, 12), td=st.sampled_from([2, 4]),
    n=st.integers(1, 5),
)
def test_roles_not_default_numbers_at_random_configs(hidden, ctx, latent, att, batch, seq, td, n):
    cfg = AimeConfig.small(hidden_dim=hidden, num_latent_channels_perceiver=ctx, perceiver_heads=2,
                           latent_dim=latent, attention_resolution=att, temporal_downsample=td)
    d = diagnose(n, cfg, batch=batch, seq_len=seq)
    if d.reproduced:
        assert top(d.raw_error, cfg, batch=batch, seq_len=seq) == n, (d.raw_error, cfg.to_dict())
    else:  # honest: the config made the WRONG code harmless, and the diagnosis says why
        assert d.note


# --- other forms of the same messages -----------------------------------------------------------------------
def test_jaxtypings_own_report(cfg):
    @jaxtyped(typechecker=beartype.beartype)
    def prior(h: Float[Tensor, "B 768"]) -> Float[Tensor, "B 1080"]:
        return torch.zeros(h.shape[0], 1080)

    @jaxtyped(typechecker=beartype.beartype)
    def slots(x: Float[Tensor, "B N D"]) -> Float[Tensor, "B N D"]:
        return x

    with pytest.raises(Exception) as wide:
        prior(torch.zeros(8, 512))
    assert "Actual value: f32[8,512]" in str(wide.value)
    result = explain(str(wide.value), cfg)
    assert result.matches[0].error == 4
    assert result.numbers["768"][0].startswith("hidden_dim + context_dim")
    with pytest.raises(Exception) as rank:
        slots(torch.zeros(8, 64, 21, 21))
    assert top(str(rank.value), cfg) == 5


def test_aimespec_contract_violations(cfg):
    def message(name: str, **arguments) -> str:
        violations = CallChecker(resolve(name), cfg).check_inputs(arguments)
        return str(ContractViolation(violations))

    assert top(message("DPGMMPrior.forward", h=torch.zeros(8, 512)), cfg) == 4
    assert top(message("SlotAttention.forward", x=torch.zeros(8, 64, 21, 21)), cfg) == 5
    hx = (torch.zeros(1, 8, 512), torch.zeros(1, 8, 512))
    text = message("LSTMLayer.forward", input=torch.zeros(128, 298), hx=hx)
    result = explain(text, cfg)
    assert result.matches[0].error == 1 and result.numbers["128"][0] == "B*T = 8*16"


def test_a_whole_traceback(cfg):
    def component_net(h):
        return nn.Linear(768, 1080)(h)

    try:
        component_net(torch.zeros(8, 512))
    except RuntimeError:
        text = traceback.format_exc()
    result = explain(text, cfg)
    assert result.matches[0].error == 4
    assert set(result.numbers) == {"8", "512", "768", "1080"}  # line numbers are not sizes


@pytest.mark.parametrize(("text", "error"), [
    ("Expected input batch_size (128) to match target batch_size (8).", 1),
    ("Expected hidden[0] size (1, 128, 512), got [1, 8, 512]", 1),
    ("Sizes of tensors must match except in dimension 1. Expected size 8 but got size 128 for tensor number 1 "
     "in the list.", 1),
    ("Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: [8, 16, 3, 64, 64]", 1),
    ("The size of tensor a (16) must match the size of tensor b (21) at non-singleton dimension 3", 2),
    ("einsum(): the number of subscripts in the equation (3) does not match the number of dimensions (4) for "
     "operand 1 and no ellipsis was given", 5),
    ("einsum(): subscript d has size 21 for operand 1 which does not broadcast with previously seen size 64", 5),
    ("einsum(): operands do not broadcast with remapped shapes [original->remapped]: [8, 4, 64]->[8, 4, 1, 64] "
     "[8, 64, 21, 21]->[8, 1, 21, 21, 64]", 5),
    ("Given normalized_shape=[64], expected input with shape [*, 64], but got input of size[8, 64, 21, 21]", 5),
    (" Error while processing rearrange-reduction pattern \"b (t h w) -> b t h w\".\n Input tensor shape: "
     "torch.Size([8, 128]). Additional info: {'t': 16, 'h': 8, 'w': 8}.\n Shape mismatch, 128 != 1024", 3),
])
def test_other_message_forms(text, error, cfg):
    assert top(text, cfg) == error, explain(text, cfg).explanation


@pytest.mark.parametrize("text", [
    "ValueError: could not convert string to float: 'abc'",
    "mat1 and mat2 shapes cannot be multiplied (3x7 and 5x11)",
    "input.size(-1) must be equal to input_size. Expected 298, got 292",
    "",
])
def test_nothing_to_match_says_so(text, cfg):
    result = explain(text, cfg)
    assert result.matches == []
    assert "No documented error fits" in result.explanation


def test_json_document(cfg):
    doc = explain(documented_errors()[3].document_error, cfg).to_json()
    assert {"version", "numbers", "matches", "explanation"} <= set(doc)
    assert set(doc["matches"][0]) >= {"error", "title", "score"}
    assert all(isinstance(v, list) for v in doc["numbers"].values())
    json.dumps(doc)


def test_numbers_list_every_decomposition_ties_included(cfg):
    numbers = explain("mat1 and mat2 shapes cannot be multiplied (8x512 and 768x1080)", cfg).numbers
    assert numbers["768"][0] == "hidden_dim + context_dim = 512 + 256"
    assert {"num_latents*A = 128*6", "B*T*A = 8*16*6"} <= set(numbers["768"])  # every sound reading, not one
    assert {"2*context_dim = 2*256", "2*code_dim = 2*256"} <= set(numbers["512"])


@pytest.mark.parametrize("cell", [torch.nn.LSTMCell, torch.nn.GRUCell])
def test_a_recurrent_cells_width_message_is_read(cell):
    """nn.LSTMCell/GRUCell write the clash got-first ("got 278 expected 298"): a cell built with the
    default config's literal 298 = 36 + 256 + 6, fed at latent_dim = 16."""
    small = AimeConfig(latent_dim=16)
    try:
        cell(298, 40)(torch.randn(2, small.latent_dim + small.num_latent_channels_perceiver + small.action_dim))
    except RuntimeError as exc:
        text = str(exc)
    else:  # pragma: no cover - torch changed its check
        pytest.fail("the cell accepted the wrong width")
    result = explain(text, small)
    assert result.numbers["278"][0] == "D + context_dim + A = 16 + 256 + 6"
    assert result.numbers["298"] == []
