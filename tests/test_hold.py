"""Holding plain, unannotated PyTorch classes against contracts: every violation, as records."""

import torch
from hypothesis import given
from torch import nn

import aimespec
from aimespec import AimeConfig, hold, implements
from aimespec import strategies as aimest
from aimespec.core.validate import CallChecker

CFG = AimeConfig()


class PlainPrior(nn.Module):
    """A correct prior written without annotations, sampling its concentration from a Gamma."""

    def __init__(self, cfg):
        super().__init__()
        k, d = cfg.max_components, cfg.latent_dim
        self.k, self.d = k, d
        self.net = nn.Linear(cfg.hidden_dim + cfg.num_latent_channels_perceiver, 2 * k * d + 2 * (k - 1) + 2)

    def forward(self, h, n_samples=10):
        out = self.net(h)
        k, d = self.k, self.d
        comp, sticks, conc = out[:, : 2 * k * d], out[:, 2 * k * d: 2 * k * d + 2 * (k - 1)], out[:, -2:]
        comp = comp.view(-1, k, 2, d)
        a, b = nn.functional.softplus(sticks).chunk(2, dim=-1)
        a, b = a + 1e-3, b + 1e-3
        u = torch.rand_like(a).clamp(1e-4, 1 - 1e-4)
        v = (1 - (1 - u) ** (1 / b)) ** (1 / a)
        v = v.clamp(1e-5, 1 - 1e-5)
        rest = torch.cumprod(torch.cat([torch.ones_like(v[:, :1]), 1 - v], dim=1), dim=1)
        pi = torch.cat([v, torch.ones_like(v[:, :1])], dim=1) * rest
        shape, rate = nn.functional.softplus(conc).unbind(-1)
        alpha = torch.distributions.Gamma(shape + 0.5, rate + 0.5).rsample((n_samples,)).T
        return {"pi": pi, "means": comp[:, :, 0], "log_vars": comp[:, :, 1], "kumar_a": a, "kumar_b": b,
                "alpha": alpha}


class FlatPrior(PlainPrior):
    """Wrong in several ways at once: hidden_dim-only input width and a mis-shaped mean."""

    def __init__(self, cfg):
        nn.Module.__init__(self)
        self.k, self.d = cfg.max_components, cfg.latent_dim
        self.net = nn.Linear(cfg.hidden_dim, 10)

    def forward(self, h, n_samples=10):
        return self.net(h)


def test_a_correct_unannotated_class_passes():
    for B, T, seed in [(8, 16, 0), (3, 7, 1), (1, 2, 2)]:
        assert hold(PlainPrior, "DPGMMPrior.forward", CFG, B, T, seed) == []


def test_an_exception_inside_the_users_code_is_a_record_not_a_crash():
    found = hold(FlatPrior, "DPGMMPrior.forward", CFG, 4, 9, 3)
    assert [(v.kind, v.batch, v.seq_len, v.seed) for v in found] == [("exception", 4, 9, 3)]
    assert "mat1 and mat2 shapes cannot be multiplied (4x768 and 512x10)" in found[0].message


def test_every_violation_is_returned_as_a_structured_record():
    class Broken(PlainPrior):
        def forward(self, h, n_samples=10):
            out = super().forward(h, n_samples)
            out["means"] = out["means"][:, :, :-4]  # D = 32
            out["pi"] = out["pi"].reshape(-1)[: h.shape[0] * 15].view(h.shape[0], 15) * 2
            del out["alpha"]
            return out

    found = hold(Broken, "DPGMMPrior.forward", CFG, 8, 16, 0)
    records = [(v.tensor, v.kind, v.expected, v.expected_shape, v.got) for v in found]
    assert records == [
        ("means", "shape", "[B, K, D]", [8, 15, 36], [8, 15, 32]),
        ("alpha", "missing", "[B, n_samples]", [8, 10], None),
        ("pi", "value", "[B, K]", [8, 15], [8, 15]),
    ]


def test_a_raising_constructor_is_a_finding():
    class Bad(nn.Module):
        def __init__(self, cfg):
            raise RuntimeError("no weights")

    found = hold(Bad, "VAEEncoder.forward", CFG, 2, 3)
    assert [(v.kind, v.message) for v in found] == [
        ("constructor", "VAEEncoder.forward: the constructor raised RuntimeError: no weights")]


def test_from_config_is_preferred():
    class Built(PlainPrior):
        made_by = None

        def __init__(self, cfg, marker):
            super().__init__(cfg)
            self.marker = marker

        @classmethod
        def from_config(cls, cfg):
            return cls(cfg, "from_config")

    assert hold(Built, "DPGMMPrior.forward", CFG, 2, 3) == []


def test_implements_returns_the_class_and_rejects_unknown_names():
    @implements("DPGMMPrior")
    class Mine(PlainPrior):
        pass

    assert Mine.__aimespec_implements__ == "DPGMMPrior"
    assert issubclass(Mine, PlainPrior)
    try:
        implements("DPGMMPriorr")
    except ValueError as exc:
        assert str(exc).startswith("'DPGMMPriorr' is not a contract; known contracts: VQPTTokenizer, ")
    else:
        raise AssertionError("unknown contract accepted")


@given(aimest.inputs("DPGMMPrior.forward", CFG))
def test_strategies_draw_valid_inputs_for_users_property_tests(call):
    assert 1 <= call.batch <= 16 and 1 <= call.seq_len <= 32
    checker = CallChecker(aimespec.resolve("DPGMMPrior.forward"), CFG)
    assert checker.check_inputs(call.arguments) == []
    out = PlainPrior(CFG)(*call.args)
    assert checker.check_outputs(out) == []


@given(aimest.inputs("AimeWorldModel.forward_sequence", AimeConfig.small(), batch=aimest.batch_sizes(1, 4)))
def test_strategies_respect_the_config_and_value_invariants(call):
    obs, actions = call.args
    assert obs.shape == (call.batch, call.seq_len, 3, 32, 32) and actions.shape[-1] == 6
    assert 0 <= obs.min() and obs.max() <= 1
