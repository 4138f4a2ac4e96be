"""Trainer.step: the reported losses, learning, checkpoint/resume, NaN refusal, exact batch splits."""

import math
import time

import pytest
import torch

from aimespec import AimeConfig, checking
from reference_model.balancing import RGB, SumBalancer
from reference_model.losses import TASKS, TERMS
from reference_model.synthetic import moving_shapes
from reference_model.trainer import NonFiniteLoss, Trainer
from reference_model.world import build_model

SMALL = AimeConfig.small()
REPORT_KEYS = {*TASKS, *TERMS, "discriminator", "grad_norm", "perplexity"}


def make_trainer(seed: int = 0, cfg: AimeConfig = SMALL, **kwargs) -> Trainer:
    torch.manual_seed(seed)
    return Trainer(build_model(cfg), cfg, **kwargs)


def batch(B: int = 4, T: int = 4, seed: int = 0, cfg: AimeConfig = SMALL):
    return moving_shapes(B, T, cfg.input_dim, cfg.action_dim, seed)


def params_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) or
                                        torch.allclose(a[k], b[k], rtol=0, atol=0, equal_nan=True) for k in a)


def test_step_reports_every_loss_as_a_float():
    trainer = make_trainer()
    obs, act = batch()
    before = params_of(trainer.model)
    report = trainer.step(obs, act)
    assert set(report) >= REPORT_KEYS, REPORT_KEYS - set(report)
    assert all(type(v) is float and math.isfinite(v) for v in report.values()), report
    assert report["reconstruction"] >= 0 and report["kl_z"] >= 0 and report["kl_alpha"] >= 0
    assert 1.0 <= report["perplexity"] <= SMALL.num_codes
    assert trainer.step_count == 1
    after = params_of(trainer.model)
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("discriminator.") for k in moved)
    assert any(k.startswith("decoder.") for k in moved) and any(k.startswith("perceiver.") for k in moved)


def test_default_balancer_and_optimisers():
    trainer = make_trainer()
    assert isinstance(trainer.balancer, RGB)
    gen = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    disc = {id(p) for g in trainer.disc_optimizer.param_groups for p in g["params"]}
    assert gen.isdisjoint(disc)
    assert disc == {id(p) for p in trainer.model.discriminator.parameters()}
    assert gen | disc == {id(p) for p in trainer.model.parameters()}
    assert trainer.optimizer.param_groups[0]["lr"] == SMALL.learning_rate


def test_the_balanced_gradient_is_clipped_to_grad_clip():
    cfg = SMALL.replace(grad_clip=1e-3)
    trainer = make_trainer(cfg=cfg, balancer=SumBalancer(cfg))
    obs, act = batch()
    grads, _, _ = trainer.compute_task_gradients(obs, act)
    assert grads.shape == (4, sum(p.numel() for p in trainer.params))
    report = trainer.step(obs, act)
    assert report["grad_norm"] > cfg.grad_clip  # it was clipped
    total = torch.cat([p.grad.reshape(-1) for p in trainer.params])
    assert total.norm().item() == pytest.approx(cfg.grad_clip, rel=1e-4)


def test_grad_reducer_sees_the_task_and_discriminator_gradients():
    seen = []

    def reducer(g: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(g.shape))
        return torch.zeros_like(g)  # a reducer whose result is used: nothing may move

    trainer = make_trainer(grad_reducer=reducer)
    before = params_of(trainer.model)
    trainer.step(*batch())
    P = sum(p.numel() for p in trainer.params)
    P_disc = sum(p.numel() for p in trainer.model.discriminator.parameters())
    assert seen == [(4, P), (1, P_disc)]
    assert same_params(before, params_of(trainer.model))


def test_non_finite_loss_is_refused_before_any_update():
    trainer = make_trainer()
    obs, act = batch()
    trainer.step(obs, act)
    with torch.no_grad():
        trainer.model.decoder.out[-1].bias.fill_(float("nan"))  # reconstructions become NaN
    before = params_of(trainer.model)
    adam_state = {k: v["step"].clone() for k, v in trainer.optimizer.state.items()}
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss at step 1: .*reconstruction=nan") as info:
        trainer.step(obs, act)
    # what the error names is carried as data, not only as text
    assert info.value.step == 1 and info.value.stage == "losses"
    assert "reconstruction" in info.value.terms and math.isnan(info.value.terms["reconstruction"])
    assert same_params(before, params_of(trainer.model))
    assert trainer.step_count == 1
    assert all(torch.equal(trainer.optimizer.state[k]["step"], v) for k, v in adam_state.items())


def test_non_finite_gradient_is_refused_before_any_update():
    def poison(g: torch.Tensor) -> torch.Tensor:
        if g.shape[0] == 4:
            g = g.clone()
            g[2, 0] = float("inf")  # the predictive task's gradient
        return g

    trainer = make_trainer(grad_reducer=poison)
    before = params_of(trainer.model)
    message = "non-finite gradient of predictive at step 0; no parameter was updated"
    with pytest.raises(NonFiniteLoss, match=message) as info:
        trainer.step(*batch())
    assert info.value.terms == {"predictive": math.inf} and info.value.stage == "gradients" and info.value.step == 0
    assert same_params(before, params_of(trainer.model))
    assert trainer.step_count == 0


def test_checkpoint_round_trip_gives_the_identical_next_step():
    trainer = make_trainer(seed=0)
    ids = torch.arange(4)
    obs, act = batch(seed=1)
    for _ in range(2):
        trainer.step(obs, act, ids)
    snapshot = trainer.state_dict()
    assert snapshot["step_count"] == 2
    resumed = make_trainer(seed=123)  # different initial weights, overwritten by the snapshot
    resumed.load_state_dict(snapshot)
    assert resumed.step_count == 2
    next_obs, next_act = batch(seed=2)
    a = trainer.step(next_obs, next_act, ids)
    b = resumed.step(next_obs, next_act, ids)
    assert a == b
    assert same_params(params_of(trainer.model), params_of(resumed.model))
    # the snapshot is a copy: stepping did not change it
    assert snapshot["step_count"] == 2
    fresh = make_trainer(seed=5)
    fresh.load_state_dict(snapshot)
    assert fresh.step(next_obs, next_act, ids) == a


def test_per_example_noise_makes_half_batch_gradients_average_to_the_full_batch():
    """The [4, P] task gradients of a batch equal the mean of its two halves' (multi-process exactness)."""
    trainer = make_trainer(seed=3)
    obs, act = batch(B=4, T=5, seed=3)
    ids = torch.tensor([7, 3, 11, 0])
    full, full_losses, _ = trainer.compute_task_gradients(obs, act, ids)
    first, first_losses, _ = trainer.compute_task_gradients(obs[:2], act[:2], ids[:2])
    second, second_losses, _ = trainer.compute_task_gradients(obs[2:], act[2:], ids[2:])
    halves = (first + second) / 2
    scale = full.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
    assert ((full - halves).abs() / scale).max().item() < 1e-4
    for task in TASKS:
        mean = (first_losses.tasks[task] + second_losses.tasks[task]) / 2
        torch.testing.assert_close(full_losses.tasks[task], mean, atol=1e-5, rtol=1e-4, msg=task)
    # without per-example noise the halves draw other noise: the equality is not trivial
    torch.manual_seed(0)
    unseeded, _, _ = trainer.compute_task_gradients(obs[:2], act[:2])
    assert not torch.allclose(unseeded, first, atol=1e-6)


def test_noise_seeds_change_with_the_step_not_the_batch():
    trainer = make_trainer()
    first = trainer.noise_seeds(torch.tensor([0, 5]))
    assert trainer.noise_seeds([5]) == first[1:]
    trainer.step_count += 1
    assert trainer.noise_seeds([0, 5]) != first


def test_two_hundred_steps_cut_the_reconstruction_loss():
    """Learning: 200 seeded steps on moving shapes cut the reconstruction loss by >= 30%.

    The small config at 16x16 pixels with one VAE stage, 16 videos of 4 frames, batches of 4:
    a step costs four backward passes through the recurrent graph, and this keeps 200 of them
    near 25 s of CPU time on one core of the (shared) development machine.
    """
    cfg = AimeConfig.small(input_dim=16, vae_channels=(8,))
    obs, act = moving_shapes(16, 4, cfg.input_dim, cfg.action_dim, seed=0)
    trainer = make_trainer(seed=0, cfg=cfg)
    g = torch.Generator().manual_seed(0)
    recon = []
    start = time.perf_counter()
    with checking("off"):
        for _ in range(200):
            idx = torch.randperm(16, generator=g)[: cfg.batch_size]
            recon.append(trainer.step(obs[idx], act[idx], idx)["reconstruction"])
    elapsed = time.perf_counter() - start
    first, last = sum(recon[:10]) / 10, sum(recon[-10:]) / 10
    print(f"reconstruction {first:.2f} -> {last:.2f} ({1 - last / first:.0%} lower), {elapsed:.1f}s for 200 steps")
    assert last <= 0.7 * first, (first, last)


def test_a_non_finite_loss_carries_its_terms_and_the_stop_reads_them_not_the_text(tmp_path):
    import math

    from reference_model.train.loop import _stopped

    exc = NonFiniteLoss("(the message is not read)", {"discriminator": math.inf})
    assert exc.terms == {"discriminator": math.inf}
    stopped = _stopped(exc, 3, None, tmp_path / "checkpoint.pt")
    assert str(stopped).startswith("training stopped at step 3: loss term discriminator is infinite;")
    nan = _stopped(NonFiniteLoss("x", {"kl_z": math.nan}), 4, 2, tmp_path / "checkpoint.pt")
    assert str(nan).startswith("training stopped at step 4: loss term kl_z is NaN;")
