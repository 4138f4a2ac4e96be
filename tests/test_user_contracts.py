"""A user's own contracts: new symbols bound to their config's fields, errors at definition, checked end to end."""

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import Float
from torch import Tensor
from typer.testing import CliRunner

import aimespec
from aimespec import AimeConfig, Contract, ContractError, UsageError, check, hold, invariants
from aimespec.cli import app
from aimespec.runtime.discover import load_source

ROOT = Path(__file__).resolve().parent.parent
BUGGY = ROOT / "examples" / "reward_head.py"
FIXED = ROOT / "examples" / "reward_head_fixed.py"
runner = CliRunner()

HEAD = '''
import torch
from jaxtyping import Float
from torch import Tensor, nn

import aimespec


class QConfig(aimespec.AimeConfig):
    n_actions_q: int = 7


aimespec.symbol("n_q", "n_actions_q", meaning="Q-value heads")


class QHeadContract(aimespec.Contract, name="QHead"):
    def forward(self, h: Float[Tensor, "B hidden_dim"]) -> Float[Tensor, "{out}"]:
        ...


class QHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.linear = nn.Linear(cfg.hidden_dim, {width})

    def forward(self, h):
        return self.linear(h)
'''


def _write(tmp_path: Path, text: str, name: str = "model.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _messages(report) -> list[str]:
    return [f.violation.message for r in report.results for f in r.findings]


# --- the tutorial's twins, end to end --------------------------------------------------------------
def test_the_planted_bug_is_found_and_its_fixed_twin_passes():
    small = AimeConfig.small()
    buggy = check(BUGGY, small, examples=2)
    assert not buggy.ok
    assert _messages(buggy) == ["RewardHead.forward: probs expected [B, n_bins] = [4, 51], got [4, 52] (B=4 n_bins=51)"]
    row = buggy.results[0]
    assert (row.contract, row.implementation) == ("RewardHead.forward", "RewardHead")  # never the contract class
    assert type(buggy.cfg).__name__ == "RewardConfig" and buggy["config"]["n_bins"] == 51
    fixed = check(FIXED, small, examples=2)
    assert fixed.ok, _messages(fixed)
    assert [r.implementation for r in fixed.results] == ["RewardHead"]


def test_the_new_field_is_set_from_the_cli_and_from_a_config_file(tmp_path):
    result = runner.invoke(app, ["check", str(FIXED), "--set", "n_bins=9", "--examples", "1", "--json"])
    assert result.exit_code == 0, result.output
    import json

    doc = json.loads(result.stdout)
    assert doc["config"]["n_bins"] == 9 and doc["ok"]
    toml = _write(tmp_path, "n_bins = 3\nreward_hidden = 8\n", "c.toml")
    result = runner.invoke(app, ["check", str(BUGGY), "--config", str(toml), "--examples", "1", "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["config"]["n_bins"] == 3
    assert "probs expected [B, n_bins] = [8, 3], got [8, 4]" in doc["results"][0]["violations"][0]["message"]


def test_an_unknown_key_still_names_itself(tmp_path):
    result = runner.invoke(app, ["check", str(FIXED), "--set", "n_binz=9"])
    assert result.exit_code == 2
    assert result.stderr == "error: n_binz: is not a config key (--set); see `aimespec spec` for the keys\n"


@pytest.mark.parametrize(("out", "width", "ok"), [("B n_q", "cfg.n_actions_q", True),
                                                   ("B n_q", "cfg.n_actions_q + 1", False),
                                                   ("B n_q", "7", None)])
def test_a_user_symbol_is_checked_like_D(tmp_path, out, width, ok):
    """A consistent wrong size fails; a width written as a number fails once the field changes."""
    path = _write(tmp_path, HEAD.format(out=out, width=width))
    default = check(path, AimeConfig.small(), examples=1)
    changed = check(path, AimeConfig.small(), examples=1, meta=False) if ok is None else None
    if ok is None:
        assert default.ok
        import dataclasses

        cfg = load_source(path).config_class.small(n_actions_q=5)
        assert dataclasses.fields(cfg)[-1].name == "n_actions_q"
        bad = check(path, cfg, examples=1)
        assert _messages(bad) == ["QHead.forward: return expected [B, n_q] = [4, 5], got [4, 7] (B=4 n_q=5)"]
        assert changed is not None and changed.ok
    else:
        assert default.ok is ok, _messages(default)


def test_a_symbol_whose_field_the_config_lacks_is_one_sentence(tmp_path):
    text = HEAD.format(out="B n_q", width="cfg.hidden_dim").replace("class QConfig(aimespec.AimeConfig):\n"
                                                                     "    n_actions_q: int = 7\n", "")
    path = _write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        check(path, AimeConfig.small())
    assert str(caught.value) == (
        f"{path} uses the symbol 'n_q', which reads the config field 'n_actions_q', but AimeConfig has no such "
        "field: add it to your AimeConfig subclass (class MyConfig(aimespec.AimeConfig): n_actions_q: int = ...)")


# --- errors when a contract is defined ---------------------------------------------------------------
def test_a_typo_in_an_output_is_a_contract_error_naming_the_closest_symbols():
    with pytest.raises(ContractError) as caught:
        class Head(Contract):
            def forward(self, h: Float[Tensor, "B hidden_dim"]) -> Float[Tensor, "B laten_dim"]: ...
    assert str(caught.value) == (
        "Head.forward: unknown symbol 'laten_dim' in the output [B, laten_dim]; closest known symbols: "
        "D (latent_dim), A (action_dim), attention_dim (declare a new size with "
        'aimespec.symbol("laten_dim", "<config field>"), or a per-call one in the contract\'s free_dims)')


def test_a_typo_in_an_input_expression_or_a_record_field_is_caught_too():
    from typing import NamedTuple, TypedDict

    with pytest.raises(ContractError, match=r"'contxt_dim' in the input h \[B, hidden_dim\+contxt_dim\]"):
        class A(Contract):
            def forward(self, h: Float[Tensor, "B hidden_dim+contxt_dim"]) -> Float[Tensor, "B D"]: ...

    class Out(TypedDict):
        mu: Float[Tensor, "B K_slot D"]

    with pytest.raises(ContractError, match=r"'K_slot' in the output mu .*closest known symbols: K_slots"):
        class Bx(Contract):
            def forward(self, h: Float[Tensor, "B D"]) -> Out: ...

    class State(NamedTuple):
        h0: Float[Tensor, "num_layer B hidden_dim"]

    with pytest.raises(ContractError, match=r"'num_layer' in the input hx.h0 .*num_layers"):
        class C(Contract):
            def forward(self, hx: State) -> Float[Tensor, "B D"]: ...


def test_free_dims_int_arguments_and_declared_symbols_are_known():
    aimespec.symbol("n_test_bins", "latent_dim + 1")

    class Fine(Contract):
        free_dims = {"P": 10}  # noqa: RUF012 - the contract's own per-call symbols

        @invariants(aimespec.Simplex("probs", over=("n_test_bins",)))
        def forward(self, g: Float[Tensor, "P"], n: int = 3) -> tuple[
                Float[Tensor, "B n"], Annotated[Float[Tensor, "B n_test_bins"], "probs"]]: ...

    mc = aimespec.resolve("Fine.forward")
    assert "n_test_bins" in mc.symbols()


def test_an_invariant_naming_no_tensor_or_axis_is_a_contract_error():
    with pytest.raises(ContractError, match=r"Simplex\(path='pii'.* names no tensor .*its tensors: h, pi"):
        class P1(Contract):
            @invariants(aimespec.Simplex("pii", over=("K",)))
            def forward(self, h: Float[Tensor, "B D"]) -> Annotated[Float[Tensor, "B K"], "pi"]: ...
    with pytest.raises(ContractError, match=r"names the axis 'D', which pi \[B, K\] does not have"):
        class P2(Contract):
            @invariants(aimespec.Simplex("pi", over=("D",)))
            def forward(self, h: Float[Tensor, "B D"]) -> Annotated[Float[Tensor, "B K"], "pi"]: ...


def test_redefining_a_contract_name_says_how_to_extend_or_replace():
    with pytest.raises(ContractError) as caught:
        class DPGMMPrior(Contract):
            def forward(self, h: Float[Tensor, "B hidden_dim"]) -> Float[Tensor, "B K"]: ...
    assert str(caught.value) == (
        "a contract named 'DPGMMPrior' already exists (in contracts.prior): to replace it on purpose write "
        "class DPGMMPrior(aimespec.Contract, replace=True); to extend it, subclass it under another name "
        "(class MyDPGMMPrior(DPGMMPrior))")
    assert aimespec.resolve("DPGMMPrior.forward").params[0].node.dims == ("B", "hidden_dim+context_dim")


def test_extending_and_replacing_on_purpose():
    from contracts.prior import DPGMMPrior

    class RewardPrior(DPGMMPrior):  # extends: the prior's forward plus a method of its own
        def reward(self, h: Float[Tensor, "B hidden_dim"]) -> Float[Tensor, "B 1"]: ...

    assert [m.name for m in aimespec.core.contract.methods_of("RewardPrior")] == [
        "RewardPrior.forward", "RewardPrior.reward"]

    class Twice(Contract):
        def forward(self, h: Float[Tensor, "B D"]) -> Float[Tensor, "B D"]: ...

    class Twice(Contract, replace=True):  # noqa: F811 - replaced on purpose
        def forward(self, h: Float[Tensor, "B D"]) -> Float[Tensor, "B K"]: ...

    assert aimespec.resolve("Twice.forward").returns.dims == ("B", "K")

    class Again(Contract):
        def forward(self, h: Float[Tensor, "B D"]) -> Float[Tensor, "B D"]: ...

    class Again(Contract):  # noqa: F811 - the same contract again (a reloaded file): nothing is redefined
        def forward(self, h: Float[Tensor, "B D"]) -> Float[Tensor, "B D"]: ...


def test_a_symbol_may_not_take_a_seed_name_or_change_meaning():
    with pytest.raises(ContractError, match=r"'D' is one of aimespec's own symbols \(latent_dim\)"):
        aimespec.symbol("D", "latent_dim")
    aimespec.symbol("n_twice", "latent_dim")
    aimespec.symbol("n_twice", "latent_dim")  # the same declaration again is harmless
    with pytest.raises(ContractError, match=r"symbol 'n_twice' is already declared as 'latent_dim'"):
        aimespec.symbol("n_twice", "hidden_dim")
    with pytest.raises(ContractError, match="is not a config field or an expression of fields"):
        aimespec.symbol("n_bad", "latent_dim ** 2")


# --- through the CLI -------------------------------------------------------------------------------------
def test_a_typo_through_check_is_exit_2_with_one_sentence(tmp_path):
    path = _write(tmp_path, HEAD.format(out="B n_qq", width="7"))
    result = subprocess.run([sys.executable, "-m", "aimespec", "check", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    # the line that writes the typo (the output annotation), not the class statement
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "B n_qq" in text)
    assert line != path.read_text().splitlines().index('class QHeadContract(aimespec.Contract, name="QHead"):') + 1
    assert result.stderr == (
        f"error: {path}:{line}: QHead.forward: unknown symbol 'n_qq' in the output [B, n_qq]; closest known symbols: "
        'n_q (declare a new size with aimespec.symbol("n_qq", "<config field>"), or a per-call one in the '
        "contract's free_dims)\n")


def test_a_contract_class_is_never_an_implementation(tmp_path):
    """Named as a contract (it is one), decorated, or subclassing a seed contract: none is built."""
    path = _write(tmp_path, '''
        from jaxtyping import Float
        from torch import Tensor, nn

        import aimespec
        from contracts.prior import DPGMMPrior


        class RewardHeadContract(aimespec.Contract):
            def forward(self, h: Float[Tensor, "B hidden_dim"]) -> Float[Tensor, "B 1"]: ...


        @aimespec.implements("RewardHeadContract")
        class MyPriorContract(DPGMMPrior):
            pass


        @aimespec.implements("RewardHeadContract")
        class Head(nn.Module):
            def __init__(self, cfg):
                super().__init__()
                self.linear = nn.Linear(cfg.hidden_dim, 1)

            def forward(self, h):
                return self.linear(h)
    ''')
    report = check(path, AimeConfig.small(), examples=1)
    assert report.ok, _messages(report)
    assert [(r.contract, r.implementation) for r in report.results] == [("RewardHeadContract.forward", "Head")]


def test_aimespec_config_names_the_config_class(tmp_path):
    base = HEAD.format(out="B n_q", width="cfg.n_actions_q")
    two = base + "\n\nclass Other(aimespec.AimeConfig):\n    n_actions_q: int = 3\n"
    with pytest.raises(UsageError, match=r"defines several config classes \(QConfig, Other\): name the one to use "
                                         r"with aimespec_config = QConfig"):
        load_source(_write(tmp_path, two, "two.py"))
    named = _write(tmp_path, two + "\n\naimespec_config = Other\n", "named.py")
    report = check(named, AimeConfig.small(), examples=1)
    assert type(report.cfg).__name__ == "Other" and report.cfg.n_actions_q == 3 and report.ok
    with pytest.raises(UsageError, match=r"aimespec_config must be a subclass of aimespec\.AimeConfig, got int 3"):
        load_source(_write(tmp_path, base + "\naimespec_config = 3\n", "bad.py"))


# --- the tutorial's property test catches the bug in pytest ----------------------------------------------
def _module(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _property_test(module):
    from aimespec import strategies as ast

    @settings(max_examples=15, deadline=None, database=None)
    @given(cfg=ast.configs(module.RewardConfig.small(), n_bins=st.integers(2, 64)), B=ast.batch_sizes(1, 8))
    def test_reward_head_holds_its_contract(cfg, B):
        assert [v.message for v in hold(module.RewardHead, "RewardHead.forward", cfg, B=B)] == []

    return test_reward_head_holds_its_contract


def test_the_property_test_catches_the_bug_and_passes_the_fix():
    buggy = _module(BUGGY, "tutorial_reward_head")
    fixed = _module(FIXED, "tutorial_reward_head_fixed")  # the same contract again: no redefinition error
    with pytest.raises(AssertionError, match=r"probs expected \[B, n_bins\]"):
        _property_test(buggy)()
    _property_test(fixed)()


def test_a_users_contract_is_held_with_strategies_inputs():
    from aimespec import strategies as ast

    fixed = _module(FIXED, "tutorial_reward_head_fixed")
    cfg = fixed.RewardConfig.small(n_bins=5)

    @settings(max_examples=5, deadline=None, database=None)
    @given(call=ast.inputs("RewardHead.forward", cfg, batch=ast.batch_sizes(1, 4)))
    def run(call):
        probs, reward = fixed.RewardHead(cfg)(*call.args)
        assert probs.shape == (call.batch, 5) and reward.shape == (call.batch,)
        assert torch.allclose(probs.sum(-1), torch.ones(call.batch))

    run()


def test_a_typo_in_a_record_field_is_reported_at_the_field(tmp_path):
    """The record is written above the contract that uses it: the sentence points at the field's line."""
    path = tmp_path / "record_typo.py"
    path.write_text(textwrap.dedent('''
        from typing import NamedTuple

        from jaxtyping import Float
        from torch import Tensor

        import aimespec


        class Heads(NamedTuple):
            value: Float[Tensor, "B 1"]
            latent: Float[Tensor, "B laten_dim"]


        class TwoHeadContract(aimespec.Contract, name="TwoHead"):
            def forward(self, h: Float[Tensor, "B hidden_dim"]) -> Heads: ...
    '''))
    result = subprocess.run([sys.executable, "-m", "aimespec", "check", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    field_line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "laten_dim" in text)
    assert result.stderr.startswith(f"error: {path}:{field_line}: TwoHead.forward: unknown symbol 'laten_dim'")
    assert "latent_dim" in result.stderr and "Traceback" not in result.stderr
