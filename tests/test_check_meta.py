"""The meta-device shape pass of `aimespec check`: used where the code allows, never a false alarm."""

import sys
import textwrap

import torch

from aimespec import AimeConfig
from aimespec.commands.check import check

CFG = AimeConfig()

HEADER = '''
import torch
from torch import nn

DEVICES = []


class VAEEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.net = nn.Linear(cfg.input_dim * cfg.input_dim * cfg.image_channels + cfg.num_latent_channels_perceiver,
                             2 * cfg.latent_dim)

    def forward(self, x, context):
        DEVICES.append(x.device.type)
        h = self.net(torch.cat([x.flatten(1), context], dim=-1))
'''


def _write(tmp_path, body: str):
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(HEADER) + textwrap.indent(textwrap.dedent(body), "        "))
    return path


def _load_devices(path):
    """The DEVICES list the checked file filled (the checker imports it under a module name of its own)."""
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == str(path):
            return module.DEVICES
    raise AssertionError("model module not found")


def test_shapes_run_on_meta_and_values_on_small_real_tensors(tmp_path):
    path = _write(tmp_path, '''
        mu, logvar = h.chunk(2, dim=-1)
        return {"mu": mu, "logvar": logvar}
    ''')
    report = check(path, CFG, examples=2, isolate=False)  # the module's DEVICES are read here
    assert report.ok, report.to_json()
    devices = _load_devices(path)
    assert "meta" in devices and "cpu" in devices


def test_data_dependent_code_falls_back_to_real_tensors_without_a_finding(tmp_path):
    path = _write(tmp_path, '''
        mu, logvar = h.chunk(2, dim=-1)
        if h.abs().sum().item() < 0:  # data-dependent: impossible on meta
            raise AssertionError
        counts = torch.bincount(torch.zeros(3, dtype=torch.long))  # no meta kernel
        gamma = torch.distributions.Gamma(torch.ones(3), torch.ones(3)).sample()  # argument validation
        return {"mu": mu + 0 * counts.sum() + 0 * gamma.sum(), "logvar": logvar}
    ''')
    report = check(path, CFG, examples=2, isolate=False)  # the module's DEVICES are read here
    assert report.ok, report.to_json()
    assert set(_load_devices(path)) >= {"meta", "cpu"}


def test_a_wrong_shape_found_on_meta_is_a_finding(tmp_path):
    path = _write(tmp_path, '''
        mu, logvar = h.chunk(2, dim=-1)
        return {"mu": mu[:, :-4], "logvar": logvar}
    ''')
    report = check(path, CFG, examples=0)
    doc = report.to_json()
    assert not doc["ok"]
    (v,) = [v for r in doc["results"] for v in r["violations"]]
    assert (v["tensor"], v["expected_shape"], v["got"], v["batch"], v["seq_len"]) == ("mu", [8, 36], [8, 32], 8, 16)


def test_no_meta_runs_everything_on_real_tensors(tmp_path):
    path = _write(tmp_path, '''
        mu, logvar = h.chunk(2, dim=-1)
        return {"mu": mu, "logvar": logvar}
    ''')
    assert check(path, CFG, examples=1, meta=False, isolate=False).ok
    assert set(_load_devices(path)) == {"cpu"}


def test_the_reference_model_runs_on_meta():
    from aimespec import checking, make_inputs
    from reference_model import build_model

    with torch.device("meta"):
        model = build_model(CFG)
    with checking("off"):
        out = model.forward_sequence(*make_inputs("AimeWorldModel.forward_sequence", CFG, 8, 16, device="meta").args)
    assert out["latents"].shape == (8, 16, 36) and out["latents"].device.type == "meta"


def test_a_gradient_taken_inside_a_forward_still_runs_the_full_size_pass_on_meta(tmp_path):
    # The meta passes run with grad mode off (each distinct operation computed once); a forward that
    # needs the caller's grad mode (a gradient of its own weights) gets a second try with it on,
    # instead of the full-size pass on real tensors.
    path = _write(tmp_path, '''
        GRAD_ON.append((x.device.type, x.shape[0], torch.is_grad_enabled()))
        (slope,) = torch.autograd.grad(h.square().sum(), self.net.weight, retain_graph=True)
        mu, logvar = h.chunk(2, dim=-1)
        return {"mu": mu + 0 * slope.sum(), "logvar": logvar}
    ''')
    path.write_text(path.read_text().replace("DEVICES = []", "DEVICES = []\nGRAD_ON = []"))
    report = check(path, CFG, examples=1, isolate=False, probes=False)
    assert report.ok, report.to_json()
    module = next(m for m in sys.modules.values() if getattr(m, "__file__", None) == str(path))
    full = CFG.batch_size
    assert ("meta", full, False) in module.GRAD_ON and ("meta", full, True) in module.GRAD_ON  # tried, retried
    assert not any(device == "cpu" and b >= full for device, b, _ in module.GRAD_ON), module.GRAD_ON


def test_a_forward_that_cannot_run_on_meta_gets_one_meta_try_per_example_not_two(tmp_path):
    path = _write(tmp_path, '''
        if float(h.detach().abs().max()) < 0:  # data-dependent: impossible on meta, whatever the grad mode
            raise AssertionError
        mu, logvar = h.chunk(2, dim=-1)
        return {"mu": mu, "logvar": logvar}
    ''')
    report = check(path, CFG, examples=2, isolate=False, probes=False)
    assert report.ok, report.to_json()
    devices = _load_devices(path)
    assert devices.count("meta") == len(report.examples)  # each pair tried on meta once (then on real tensors)
