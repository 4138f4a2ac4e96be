"""Structure findings check what is inside; a call that cannot bind prints both signatures."""

from aimespec.commands.check import check
from aimespec.commands.check_inside import contract_signature, look_inside
from aimespec.core.contract import resolve

MIXTURE_AND_DICT = '''
import torch
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal


class DPGMMPrior(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.k, self.d = cfg.max_components, cfg.latent_dim
        self.net = nn.Linear(cfg.hidden_dim + cfg.context_dim, self.k * (2 * self.d + 1))

    def forward(self, h, n_samples=10):
        B = h.shape[0]
        out = self.net(h)
        pi = out[:, : self.k].softmax(-1)
        means = out[:, self.k: self.k + self.k * self.d].reshape(B, self.k, self.d)
        log_vars = out[:, self.k + self.k * self.d:].reshape(B, self.k, self.d)
        ones = torch.ones(B, self.k - 1)
        alpha = torch.ones(B, n_samples, 1)  # one axis too many
        mix = MixtureSameFamily(Categorical(probs=pi), Independent(Normal(means, log_vars.exp()), 1))
        return mix, {"pi": pi, "means": means, "log_vars": log_vars, "kumar_a": ones, "kumar_b": ones,
                     "alpha": alpha}
'''

WRONG_SIGNATURES = '''
import torch


class AttentionSchema:
    def __init__(self, cfg):
        self.res = cfg.attention_resolution

    def forward(self, observation, hidden_state):  # forgot the context
        return torch.zeros(observation.shape[0], self.res, self.res), torch.zeros(observation.shape[0], 2)


class RGB:
    def __init__(self, cfg):
        pass

    def balance(self, grads, weights):
        return grads.mean(0)
'''


def _findings(report):
    return {(f.violation.contract, f.violation.tensor): f for r in report.results for f in r.findings}


def test_a_wrong_structure_holding_the_contracts_mapping_is_checked_inside_too(tmp_path, small_cfg):
    path = tmp_path / "mixture.py"
    path.write_text(MIXTURE_AND_DICT)
    found = _findings(check(path, small_cfg, examples=0))
    assert set(found) == {("DPGMMPrior.forward", "return"), ("DPGMMPrior.forward", "alpha")}
    outer = found[("DPGMMPrior.forward", "return")].violation
    alpha = found[("DPGMMPrior.forward", "alpha")].violation
    assert outer.kind == "type"
    assert outer.message.endswith("got tuple; item 1 holds the contract's mapping: checked too")
    assert alpha.kind == "rank" and alpha.got == [small_cfg.batch_size, 10, 1]
    assert alpha.message.startswith("DPGMMPrior.forward: inside the returned tuple (item 1, which holds the "
                                    "contract's mapping): alpha expected 2 dims [B, n_samples]")
    assert alpha.where.endswith("mixture.py:22")


def test_look_inside_finds_only_the_contracts_structure():
    prior, schema = resolve("DPGMMPrior.forward").returns, resolve("AttentionSchema.forward").returns
    assert look_inside(prior, (1, {"pi": 0})) == ("item 1", {"pi": 0})
    assert look_inside(prior, {"pi": 0}) is None  # the right structure: nothing to look for
    assert look_inside(prior, (1, 2)) is None
    assert look_inside(schema, [(1, 2), "x", "y"]) == ("item 0", (1, 2))
    assert look_inside(schema, {"out": (1, 2)}) == ("key 'out'", (1, 2))


def test_a_call_that_cannot_bind_prints_both_signatures(tmp_path, small_cfg):
    path = tmp_path / "signatures.py"
    path.write_text(WRONG_SIGNATURES)
    found = _findings(check(path, small_cfg, examples=0))
    schema = found[("AttentionSchema.forward", "(call)")]
    assert "takes 3 positional arguments but 4 were given" in schema.violation.message
    assert schema.explanation == (
        "the contract's signature is forward(observation: [B, C, H, W], hidden_state: [B, hidden_dim], "
        "context: [B, context_dim], fused_feat: [B, attention_dim, H_att, W_att] = None); yours is "
        "forward(observation, hidden_state)")
    assert schema.violation.where.endswith("signatures.py:9")  # the def: the call never got inside
    rgb = found[("RGB.balance", "(call)")]
    assert rgb.explanation.endswith("yours is balance(grads, weights)")


def test_contract_signatures_name_every_argument_and_structure():
    assert contract_signature(resolve("LSTMLayer.forward")) == (
        "forward(input: [B, D+context_dim+A], hx: ([num_layers, B, hidden_dim], [num_layers, B, hidden_dim]))")
    assert contract_signature(resolve("DPGMMPrior.forward")) == (
        "forward(h: [B, hidden_dim+context_dim], n_samples: int = 10)")


def test_structure_findings_say_why_and_what_to_do(tmp_path, small_cfg):
    path = tmp_path / "mixture.py"
    path.write_text(MIXTURE_AND_DICT)
    outer = _findings(check(path, small_cfg, examples=0))[("DPGMMPrior.forward", "return")]
    assert outer.explanation.startswith("the contract returns the seed's mapping (dict keys pi, means, ")
    assert outer.violation.fix.startswith("return a dict with exactly those keys")


def test_explain_reads_aimespecs_structure_dtype_and_timeout_messages(cfg):
    from aimespec.explain.engine import explain

    cases = {
        "DPGMMPrior.forward: return expected a mapping with keys pi, means, got tuple": "mapping",
        "AttentionSchema.forward: return expected a tuple of 2 (attention_probs_2d, regularized_coords), got Tensor":
            "tuple",
        "VAEEncoder.forward: mu is missing from the returned mapping (expected [B, D] = [8, 36])": "missing-key",
        "VQPTTokenizer.decode: tokens expected an integer tensor [B, T, H_t, W_t], got torch.float32": "dtype",
        "RGB.balance: did not return within 20 s at B=8, T=16; if it is only slow, rerun with --timeout 60":
            "timeout",
    }
    for text, rule in cases.items():
        result = explain(text, cfg)
        assert [a["rule"] for a in result.advice] == [rule], text
        assert result.explanation.endswith("is not what the contract says).")
