"""The checker's caches never answer for another config or another symbol table: the config-bound
values (core/symbols.py `config_values`, kept per config object and symbol generation) and the
compiled plans with those values written in (core/fastcheck.py `plan_of`, per contract object,
config object and symbol generation)."""

import dataclasses

import pytest
import torch
from jaxtyping import Float
from torch import Tensor

import aimespec
from aimespec import AimeConfig, Contract, checked, checking
from aimespec.core.contract import forget_contracts, resolve
from aimespec.core.symbols import forget_user_symbols
from aimespec.core.validate import Bindings, CallChecker
from aimespec.runtime.hold import make_inputs, make_result

SMALL = AimeConfig.small()
WIDER = AimeConfig.small(hidden_dim=48)  # the prior's input width hidden_dim+context_dim moves


def _inputs(cfg: AimeConfig):
    return make_inputs(resolve("DPGMMPrior.forward"), cfg, 2, 3, seed=0).arguments


def test_a_call_is_held_to_its_own_config_not_the_one_checked_before():
    contract = resolve("DPGMMPrior.forward")
    for _ in range(2):  # the second round finds both configs' values cached
        assert CallChecker(contract, SMALL).check_inputs(_inputs(SMALL)) == []
        wrong = CallChecker(contract, WIDER).check_inputs(_inputs(SMALL))
        assert [v.tensor for v in wrong] == ["h"] and "hidden_dim+context_dim" in wrong[0].message
        assert CallChecker(contract, WIDER).check_inputs(_inputs(WIDER)) == []


def test_an_equal_config_built_again_is_checked_by_its_own_values():
    contract = resolve("DPGMMPrior.forward")
    for width in (32, 40, 32, 40):  # a fresh object each time, some equal to one seen before
        cfg = dataclasses.replace(SMALL, hidden_dim=width)
        assert Bindings(cfg, contract.free_symbols()).values["hidden_dim"] == width
        assert CallChecker(contract, cfg).check_inputs(_inputs(cfg)) == []


def test_a_symbol_declared_or_forgotten_after_a_check_changes_the_values_bound():
    free = resolve("DPGMMPrior.forward").free_symbols()
    assert "n_cache_probe" not in Bindings(SMALL, free).values  # cached now, before the declaration
    aimespec.symbol("n_cache_probe", "latent_dim + 1", meaning="a probe of the cache")
    try:
        assert Bindings(SMALL, free).values["n_cache_probe"] == SMALL.latent_dim + 1
    finally:
        forget_user_symbols(__name__)
    assert "n_cache_probe" not in Bindings(SMALL, free).values


def test_the_values_a_call_binds_do_not_leak_into_the_next_call():
    contract = resolve("DPGMMPrior.forward")
    first = CallChecker(contract, SMALL)
    assert first.check_inputs(_inputs(SMALL)) == [] and first.bindings.values["B"] == 2
    other = make_inputs(contract, SMALL, 5, 3, seed=0).arguments
    second = CallChecker(contract, SMALL)
    assert second.check_inputs(other) == [] and second.bindings.values["B"] == 5
    assert "B" not in Bindings(SMALL, contract.free_symbols()).values


def test_a_failed_fast_walk_leaves_no_binding_behind():
    """The fast path binds B from the first tensor; when a later one disagrees it must undo that,
    or the full validator would start from its B instead of the majority's."""
    contract = resolve("AttentionSchema.forward")
    arguments = dict(make_inputs(contract, SMALL, 1, 3, seed=0).arguments)
    arguments["observation"] = torch.cat([arguments["observation"]] * 2)  # one tensor of three says B=2
    found = CallChecker(contract, SMALL).check_inputs(arguments)
    assert [v.tensor for v in found] == ["observation"] and found[0].bindings["B"] == 1


def test_one_checked_method_on_two_models_is_held_to_each_models_config():
    contract = resolve("DPGMMPrior.forward")

    class Prior:
        def __init__(self, cfg):
            self.cfg = cfg

        @checked("DPGMMPrior.forward")
        def forward(self, h, n_samples=10):
            return make_result(contract, self.cfg, h.shape[0], 3, seed=1)  # n_samples: its default

    small, wider = Prior(SMALL), Prior(WIDER)
    with checking("full"):
        for _ in range(2):
            small.forward(_inputs(SMALL)["h"])
            wider.forward(_inputs(WIDER)["h"])
            with pytest.raises(aimespec.ContractViolation, match="hidden_dim"):
                wider.forward(_inputs(SMALL)["h"])


def test_a_contract_checked_again_after_its_symbol_was_declared_anew_uses_the_new_value():
    """The plan of a contract has its config's sizes written in: when the user's symbol it reads
    is forgotten and declared again from another field, the next check must use the new size."""
    aimespec.symbol("n_probe_width", "latent_dim + 1", meaning="a probe of the plan cache")
    try:
        class CacheProbe(Contract):
            def forward(self, x: Float[Tensor, "B n_probe_width"]) -> Float[Tensor, "B"]: ...

        contract = resolve("CacheProbe.forward")
        one, two = torch.zeros(2, SMALL.latent_dim + 1), torch.zeros(2, SMALL.latent_dim + 2)
        assert CallChecker(contract, SMALL).check_inputs({"x": one}) == []
        assert CallChecker(contract, SMALL).check_inputs({"x": two}) != []
        forget_user_symbols(__name__)
        aimespec.symbol("n_probe_width", "latent_dim + 2", meaning="a probe of the plan cache")
        assert resolve("CacheProbe.forward") is contract  # the same contract object: only the symbol moved
        assert [v.tensor for v in CallChecker(contract, SMALL).check_inputs({"x": one})] == ["x"]
        assert CallChecker(contract, SMALL).check_inputs({"x": two}) == []
    finally:
        forget_user_symbols(__name__)
        forget_contracts(__name__)


def _width_probe(name: str, contract_name: str):
    """A checked module whose input width is the user's symbol `name` (latent_dim + 1 for now)."""
    aimespec.symbol(name, "latent_dim + 1", meaning="a probe of the wrapper's plan")

    class _Contract(Contract, name=contract_name):
        def forward(self, x: Float[Tensor, f"B {name}"]) -> Float[Tensor, f"B {name}"]: ...

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cfg = SMALL

        @checked(f"{contract_name}.forward")
        def forward(self, x: Tensor) -> Tensor:
            return x

    return Probe()


def _redeclare(name: str) -> None:
    forget_user_symbols(__name__)
    aimespec.symbol(name, "latent_dim + 2", meaning="a probe of the wrapper's plan")


def test_a_checked_method_follows_its_symbol_declared_anew_between_two_calls():
    """The wrapper keeps its last plan: a symbol declared anew since must make it ask again."""
    probe, width = _width_probe("n_wrapper_probe", "WrapperProbe"), SMALL.latent_dim
    try:
        with checking("full"):
            probe(torch.zeros(2, width + 1))
            _redeclare("n_wrapper_probe")
            probe(torch.zeros(2, width + 2))
            with pytest.raises(aimespec.ContractViolation, match=r"x expected \[B, n_wrapper_probe\]"):
                probe(torch.zeros(2, width + 1))
    finally:
        forget_user_symbols(__name__)
        forget_contracts(__name__)


def test_a_symbol_declared_while_the_plan_is_compiled_is_not_missed(monkeypatch):
    """Another thread declares the symbol anew while a call compiles its plan (simulated by doing it
    right after plan_of): the plan was compiled without it, so the next call must compile again,
    not keep it under the newer generation."""
    import aimespec.runtime.checked as checked_module

    probe, width = _width_probe("n_race_probe", "RaceProbe"), SMALL.latent_dim
    real = checked_module.plan_of

    def plan_of_then_redeclare(contract, cfg):
        plan = real(contract, cfg)
        _redeclare("n_race_probe")
        monkeypatch.setattr(checked_module, "plan_of", real)
        return plan

    monkeypatch.setattr(checked_module, "plan_of", plan_of_then_redeclare)
    try:
        with checking("full"):
            probe(torch.zeros(2, width + 1))  # held to the plan of latent_dim + 1, as it began
            with pytest.raises(aimespec.ContractViolation, match=r"x expected \[B, n_race_probe\]"):
                probe(torch.zeros(2, width + 1))
            probe(torch.zeros(2, width + 2))
    finally:
        forget_user_symbols(__name__)
        forget_contracts(__name__)


def test_config_values_computed_while_a_symbol_is_declared_are_not_kept_as_the_newer_ones(monkeypatch):
    """The same for the config's values: computed under the old table, kept under the old generation."""
    from aimespec.core import symbols

    free = resolve("DPGMMPrior.forward").free_symbols()
    real = symbols._bound_values

    def values_then_declare(cfg, generation):
        values = real(cfg, generation)
        monkeypatch.setattr(symbols, "_bound_values", real)
        aimespec.symbol("n_values_probe", "latent_dim + 1", meaning="a probe of the values cache")
        return values

    fresh = dataclasses.replace(SMALL, hidden_dim=SMALL.hidden_dim)  # an object no cache has seen
    monkeypatch.setattr(symbols, "_bound_values", values_then_declare)
    try:
        assert "n_values_probe" not in symbols.config_values(fresh, free)
        assert symbols.config_values(fresh, free)["n_values_probe"] == SMALL.latent_dim + 1
    finally:
        forget_user_symbols(__name__)
