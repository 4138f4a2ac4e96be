"""Meta-device passes: repeated identical component calls computed once (MetaMemo), the meta object
built once per component, factory calls landing on meta, torch._dynamo never imported by a check.

The memo must never change what a pass records: each test compares a pass with it to one without.
"""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from aimespec import AimeConfig, checking
from aimespec.commands.check import check
from aimespec.runtime.meta_device import meta_device
from aimespec.runtime.record import Recorder

CFG = AimeConfig.small()
D, CTX = CFG.latent_dim, CFG.context_dim
FLAT = CFG.image_channels * CFG.input_dim**2 + CTX


class Helper:
    """A plain object holding state (not a module, not a tensor)."""

    def __init__(self) -> None:
        self.items: list[torch.Tensor] = []


class VAEEncoder(nn.Module):
    """A VAEEncoder (by name) whose output may depend on state a call leaves behind."""

    def __init__(self, cfg: AimeConfig, behaviour: str) -> None:
        super().__init__()
        self.cfg, self.behaviour = cfg, behaviour
        self.net = nn.Linear(FLAT, 2 * D)
        self.calls = 0
        self.memory: list[torch.Tensor] = []
        self.helper = Helper()
        self.cache: dict[str, torch.Tensor] = {}
        self.last: torch.Tensor | None = None

    def forward(self, x, context):
        h = self.net(torch.cat([x.flatten(1), context], dim=-1))
        mu, logvar = h.chunk(2, dim=-1)
        kind = self.behaviour
        if kind == "counter":  # wrong after the second call
            self.calls += 1
            if self.calls > 2:
                mu = mu[:, :-1]
        elif kind == "memory":  # a memory that grows: the width follows it
            self.memory.append(mu)
            mu = torch.cat(self.memory, dim=-1)[:, :D + len(self.memory) - 1]
        elif kind == "helper":
            self.helper.items.append(mu)
            if len(self.helper.items) > 3:
                logvar = logvar[:, :1]
        elif kind == "cache":  # a dict changed in place, its length the same after the first call
            self.cache["mem"] = mu if "mem" not in self.cache else torch.cat([self.cache["mem"], mu], dim=0)
            mu = self.cache["mem"][: x.shape[0] + self.cache["mem"].shape[0] // (2 * x.shape[0])]
        elif kind == "last":  # written for the caller to read (the reference model's `self.last`)
            self.last = torch.zeros(x.shape[0], 1 if self.last is None else self.last.shape[1] + 1)
        elif kind == "lazy":  # a submodule created by the first call
            if not hasattr(self, "extra"):
                self.extra = nn.Linear(D, D)
            mu = self.extra(mu)
        elif kind == "tensor_state":  # a plain tensor attribute that grows
            kept = mu if self.last is None else torch.cat([self.last, mu], dim=0)
            self.last = kept
            if kept.shape[0] > 3 * x.shape[0]:
                mu = mu[:, :2]
        return {"mu": mu, "logvar": logvar}


class Loop(nn.Module):
    """Calls its encoder once per step, as a world model's forward_sequence does."""

    def __init__(self, cfg: AimeConfig, behaviour: str) -> None:
        super().__init__()
        self.encoder = VAEEncoder(cfg, behaviour)

    def run(self, frames, context):
        widths = []
        for t in range(frames.shape[1]):
            out = self.encoder(frames[:, t], context[:, t])
            widths.append(out["mu"].shape[-1])
            if self.encoder.last is not None:
                widths.append(self.encoder.last.shape[-1])
        return widths


def _recorded(root: nn.Module, run, memo: bool) -> tuple[list, object, int]:
    """What one meta pass records (contract, shapes, violation messages), what it returned, memo hits."""
    with checking("off"), meta_device(), Recorder(CFG, frozenset(), check=True, memo=memo).install(root) as rec:
        result = run()
    calls = [(c.contract.name, c.owner, c.inputs, c.outputs, [v.message for v in c.input_violations],
              [v.message for v in c.output_violations]) for c in rec.calls]
    return calls, result, rec.memo.hits if rec.memo is not None else 0


BEHAVIOURS = ["pure", "counter", "memory", "helper", "cache", "last", "lazy", "tensor_state"]


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_the_memo_records_what_running_every_call_records(behaviour):
    T, B = 6, 3
    runs = []
    for memo in (False, True):
        with torch.device("meta"):
            root = Loop(CFG, behaviour)
        frames = torch.empty(B, T, CFG.image_channels, CFG.input_dim, CFG.input_dim, device="meta")
        context = torch.empty(B, T, CTX, device="meta")
        runs.append(_recorded(root, lambda root=root, f=frames, c=context: root.run(f, c), memo))
    (plain, plain_out, _), (memo, memo_out, hits) = runs
    assert memo == plain and memo_out == plain_out
    if behaviour == "pure":
        assert hits == T - 1  # one call computed, five answered
    if behaviour in ("counter", "memory", "cache", "helper", "tensor_state"):
        assert any(violations for *_, ins, outs in plain for violations in (ins, outs))  # the bug is seen


def test_the_reference_model_at_the_small_config_records_the_same_calls_with_fewer_run():
    from aimespec import make_inputs
    from reference_model import build_model

    runs = []
    for memo in (False, True):
        with torch.device("meta"):
            model = build_model(CFG)
        args = make_inputs("AimeWorldModel.forward_sequence", CFG, 3, 5, device="meta").args
        runs.append(_recorded(model, lambda m=model, a=args: m.forward_sequence(*a)["latents"].shape, memo))
    (plain, plain_out, _), (memo, memo_out, hits) = runs
    assert memo == plain and memo_out == plain_out == (3, 5, CFG.latent_dim)
    assert len(plain) > 20 and hits >= 3 * 4  # steps 2..4 of the per-step components at least


def test_real_tensors_are_never_answered_from_the_memo():
    root = Loop(CFG, "pure")
    frames = torch.rand(2, 4, CFG.image_channels, CFG.input_dim, CFG.input_dim)
    with checking("off"), Recorder(CFG, frozenset(), check=True, memo=True).install(root) as rec:
        root.run(frames, torch.rand(2, 4, CTX))
    assert rec.memo is not None and rec.memo.hits == 0 and not rec.memo.entries


MODEL = '''
import torch
from torch import nn

BUILT, RAN = [], []


class VAEEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        BUILT.append(torch.empty(0).device.type)
        self.net = nn.Linear(cfg.input_dim * cfg.input_dim * cfg.image_channels + cfg.num_latent_channels_perceiver,
                             2 * cfg.latent_dim)

    def forward(self, x, context):
        RAN.append((x.device.type, x.shape[0]))
        offset = torch.zeros(x.shape[0], 2 * self.cfg.latent_dim)  # no device=: lands on meta in a meta pass
        mu, logvar = (self.net(torch.cat([x.flatten(1), context], dim=-1)) + offset).chunk(2, dim=-1)
        return {"mu": mu, "logvar": logvar}
'''


def _module_of(path):
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == str(path):
            return module
    raise AssertionError("model module not found")


def test_factory_calls_without_device_stay_on_meta_and_the_meta_object_is_built_once(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    cfg = AimeConfig()
    report = check(path, cfg, examples=3, isolate=False)  # in this process: its module is readable here
    assert report.ok, report.to_json()
    module = _module_of(path)
    assert module.BUILT.count("meta") == 1  # one meta object serves every (B, T)
    assert ("meta", cfg.batch_size) in module.RAN
    assert ("cpu", cfg.batch_size) not in module.RAN  # the full-size call never fell back to real tensors


CHECK_WITHOUT_DYNAMO = textwrap.dedent('''
    import json, sys
    from aimespec import AimeConfig
    from aimespec.commands.check import check
    from aimespec.runtime.meta_device import _MARK, _disable_dynamo_targets

    report = check(None, AimeConfig.small(), examples=1, isolate=False)  # the meta passes run in this process
    marked = [fn for fn in _disable_dynamo_targets() if getattr(fn, _MARK, None) is fn]
    print(json.dumps({"ok": report.ok, "dynamo": "torch._dynamo" in sys.modules,
                      "targets": len(_disable_dynamo_targets()), "left_marked": len(marked)}))
''')


def test_a_check_never_imports_torch_dynamo_and_leaves_torch_as_it_was():
    done = subprocess.run([sys.executable, "-c", CHECK_WITHOUT_DYNAMO], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    assert doc == {"ok": True, "dynamo": False, "targets": doc["targets"], "left_marked": 0}
    assert doc["targets"] > 0
