"""What `check` did not check, named; hints for classes that read like a contract; `spec PATH`."""

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aimespec import AimeConfig, UsageError, check
from aimespec.cli import app
from aimespec.commands.coverage import unchecked_labels
from aimespec.runtime.suggest import suggest

ROOT = Path(__file__).resolve().parent.parent
REWARD = ROOT / "examples" / "reward_head.py"
runner = CliRunner()

WORLD = '''
import torch
from torch import nn


class ContextNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Linear(cfg.context_dim, cfg.context_dim)


class LSTMLayer(nn.Module):  # implements a contract by its name: covers its subtree
    def __init__(self, cfg):
        super().__init__()
        self.lstm = nn.LSTM(cfg.lstm_input_dim, cfg.hidden_dim, cfg.lstm_layers)

    def forward(self, input, hx):
        out, (h, c) = self.lstm(input.unsqueeze(0), tuple(hx))
        return out[0], (h, c)


class SlotAtention(nn.Module):
    def forward(self, x, seed_slots=None):
        return x


class World(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.context_net = ContextNet(cfg)
        self.dynamics = nn.LSTMCell(4, 4)
        self.blocks = nn.ModuleDict({"lstm": LSTMLayer(cfg), "mix": nn.Linear(2, 2)})
        self.slots = SlotAtention()

    def forward_sequence(self, observations, actions):
        c = self.cfg
        B, T = observations.shape[:2]
        att = torch.full((B, T, c.attention_resolution, c.attention_resolution), 1.0 / c.attention_resolution ** 2)
        return {"latents": torch.zeros(B, T, c.latent_dim), "reconstructions": observations.clone(),
                "attention_maps": att}


def build_model(cfg):
    return World(cfg)
'''


def _write(tmp_path: Path, text: str, name: str = "model.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_unchecked_submodules_are_named_in_json_and_in_one_terminal_line(tmp_path):
    path = _write(tmp_path, WORLD)
    result = runner.invoke(app, ["check", str(path), "--examples", "1", "--json", "--set", "batch_size=2",
                                 "--set", "sequence_length=3"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    model = next(r for r in doc["results"] if r["implementation"] == "build_model")
    assert model["unchecked"] == ["context_net (ContextNet)", "dynamics (LSTMCell)", "blocks.mix (Linear)",
                                  "slots (SlotAtention)"]
    assert doc["suggestions"] == [{
        "class": "SlotAtention", "contract": "SlotAttention", "why": "its name",
        "hint": 'SlotAtention looks like the contract SlotAttention (its name): decorate it with '
                '@aimespec.implements("SlotAttention")'}]
    text = runner.invoke(app, ["check", str(path), "--examples", "1", "--set", "batch_size=2",
                               "--set", "sequence_length=3"], env={"COLUMNS": "250"}).stdout  # no folding
    lines = text.splitlines()
    assert "not checked: context_net (ContextNet), dynamics (LSTMCell), blocks.mix (Linear), slots (SlotAtention)" \
        in lines
    assert ('hint: SlotAtention looks like the contract SlotAttention (its name): decorate it with '
            '@aimespec.implements("SlotAttention")') in lines


def test_the_reference_model_leaves_nothing_unchecked(small_cfg):
    import reference_model

    assert unchecked_labels(reference_model.build_model(small_cfg)) == []


def test_a_file_with_no_component_gets_a_hint(tmp_path):
    path = _write(tmp_path, '''
        from torch import nn


        class DPGMMPiror(nn.Module):
            def forward(self, h, n_samples=10):
                return h


        class Balancer:
            def balance(self, grads):
                return grads.mean(0)
    ''')
    with pytest.raises(UsageError) as caught:
        check(path, AimeConfig.small())
    assert str(caught.value).endswith(
        '(DPGMMPiror looks like the contract DPGMMPrior (its name): decorate it with '
        '@aimespec.implements("DPGMMPrior"); Balancer looks like the contract RGB (its signature): decorate it '
        'with @aimespec.implements("RGB"))')


def test_hints_by_signature_need_a_telling_one():
    class Encoder:
        def forward(self, x, context):
            return x

    class Generic:
        def forward(self, x):
            return x

    class Tokens:
        def encode(self, video):
            return video

        def decode(self, tokens):
            return tokens

    assert suggest(Encoder).contract == "VAEEncoder"
    assert suggest(Generic) is None  # forward(x) points at no contract in particular
    assert suggest(Tokens).contract == "VQPTTokenizer"
    import torch

    assert suggest(torch.nn.LSTMCell) is None


# --- spec PATH -------------------------------------------------------------------------------------------
def test_spec_of_a_file_shows_its_symbols_and_contracts_beside_the_seeds():
    result = runner.invoke(app, ["spec", str(REWARD), "--json", "--set", "n_bins=101"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    label = doc["source"]
    assert label.endswith("reward_head.py")
    assert doc["symbols"]["n_bins"] == 101 and doc["symbols"]["D"] == 36
    own = [r for r in doc["symbol_table"] if r["origin"] == label]
    assert own == [{"symbol": "n_bins", "meaning": "Reward bins", "source": "n_bins", "value": 101, "free": False,
                    "seed": False, "description": "Bins of the categorical reward distribution", "origin": label}]
    head = next(c for c in doc["contracts"] if c["contract"] == "RewardHead.forward")
    assert head["origin"] == label and head["invariants"] == ["probs sums to 1 over n_bins"]
    assert [(t["name"], t["symbolic"], t["shape"]) for t in head["tensors"]] == [
        ("h", "[B, hidden_dim]", [8, 512]), ("z", "[B, D]", [8, 36]), ("probs", "[B, n_bins]", [8, 101]),
        ("reward", "[B]", [8])]
    assert {c["contract"] for c in doc["contracts"] if c["origin"] == "aimespec"} >= {"DPGMMPrior.forward"}


def test_spec_of_a_file_as_markdown_and_table():
    md = runner.invoke(app, ["spec", str(REWARD), "--markdown"])
    assert md.exit_code == 0, md.output
    assert "### Symbols of " in md.stdout and "| `n_bins` | Reward bins | 51 | `n_bins` |" in md.stdout
    assert "| RewardHead.forward | probs | `[B, n_bins]` | `[8, 51]` |" in md.stdout
    seed_part = md.stdout.split("### Symbols of ")[0]
    assert "n_bins" not in seed_part  # the seed's tables stay the seed's
    table = runner.invoke(app, ["spec", str(REWARD)])
    assert table.exit_code == 0 and "Contracts of" in table.stdout and "probs sums to 1 over n_bins" in table.stdout


def test_spec_of_a_module_of_contracts_only(tmp_path):
    path = _write(tmp_path, '''
        from jaxtyping import Float
        from torch import Tensor

        import aimespec


        class ValueConfig(aimespec.AimeConfig):
            value_bins: int = 11


        aimespec.symbol("value_bins")


        class ValueHead(aimespec.Contract):
            def forward(self, h: Float[Tensor, "B hidden_dim"]) -> Float[Tensor, "B value_bins"]: ...
    ''', "values.py")
    doc = json.loads(runner.invoke(app, ["spec", str(path), "--json"]).stdout)
    assert doc["symbols"]["value_bins"] == 11
    assert [c["contract"] for c in doc["contracts"] if c["origin"] != "aimespec"] == ["ValueHead.forward"]
    seed = json.loads(runner.invoke(app, ["spec", "--json"]).stdout)  # another file's contracts never leak in
    assert all(c["origin"] == "aimespec" for c in seed["contracts"]) and "value_bins" not in seed["symbols"]


def test_spec_of_a_file_whose_symbol_reads_a_missing_field_is_one_sentence(tmp_path):
    path = _write(tmp_path, 'import aimespec\n\naimespec.symbol("n_x", "n_x_field")\n', "nofield.py")
    result = runner.invoke(app, ["spec", str(path)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {path} uses the symbol 'n_x', which reads the config field 'n_x_field', but AimeConfig has no "
        "such field: add it to your AimeConfig subclass (class MyConfig(aimespec.AimeConfig): n_x_field: int = ...)\n")
