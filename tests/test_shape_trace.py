"""The seed's "Forward Pass: Complete Shape Trace", number by number, at the default config.

One default-config forward (B=8, T=16, no autograd graph: the shapes are the same and it
costs a few seconds) for the whole file: every checked component call is recorded with
`aimespec.observing`, and forward hooks catch the intermediates that are not component
boundaries (the 3-D encoding, the VQ input, token embeddings, latent queries, the attention
features, the component network's raw output). Each test then reads the numbers the seed
prints. Where our layout differs from the seed's text, the test says how. The task
gradients `[4, P]` need the graph and four backward passes (about 30 s at B=8, T=16): P
does not depend on B or T, so they are taken at the default config on a B=2, T=2 batch.
"""

from collections import defaultdict

import pytest
import torch
from einops import rearrange

from aimespec import AimeConfig, observing
from reference_model.synthetic import moving_shapes
from reference_model.trainer import Trainer
from reference_model.world import AimeWorldModel

B, T = 8, 16


class Trace:
    """Every checked call (by contract name, in order) and every hooked module's input/output."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[dict, object]]] = defaultdict(list)
        self.hooks: dict[str, list[tuple[tuple, object]]] = defaultdict(list)

    def observe(self, contract, arguments, result) -> None:
        self.calls[contract.name].append((arguments, result))

    def hook(self, name: str):
        def record(module, args, output):
            self.hooks[name].append((args, output))

        return record


@pytest.fixture(scope="module")
def trace():
    cfg = AimeConfig()
    torch.manual_seed(0)
    model = AimeWorldModel(cfg)
    trainer = Trainer(model, cfg)
    observations, actions = moving_shapes(B, T, cfg.input_dim, cfg.action_dim, seed=0)
    rec = Trace()
    modules = {
        "to_code": model.perceiver.tokenizer.to_code,
        "vq": model.perceiver.tokenizer.vq,
        "token_decoder": model.perceiver.tokenizer.decoder,
        "token_embed": model.perceiver.token_embed,
        "cross": model.perceiver.cross,
        "component_net": model.prior.component_net,
        "features": model.attention_schema.features,
        "top_down": model.attention_schema.top_down,
        **{f"encoder_stage{i}": stage for i, stage in enumerate(model.encoder.stages)},
        **{f"decoder_stage{i}": stage for i, stage in enumerate(model.decoder.stages)},
    }
    handles = [module.register_forward_hook(rec.hook(name)) for name, module in modules.items()]
    try:
        with observing(rec.observe), torch.no_grad():
            out, losses = trainer.forward(observations, actions)
            real_score = model.discriminator(observations)
            fake_score = model.discriminator(out["reconstructions"])
    finally:
        for handle in handles:
            handle.remove()
    return {
        "rec": rec, "out": out, "losses": losses, "observations": observations, "actions": actions,
        "real_score": real_score, "fake_score": fake_score, "trainer": trainer,
    }


def shape(x) -> list[int]:
    return list(x.shape)


def only(rec: Trace, name: str, kind: str = "hooks"):
    entries = (rec.hooks if kind == "hooks" else rec.calls)[name]
    assert entries, f"nothing recorded for {name}"
    return entries


# ---------------------------------------------------------------- INPUT
def test_input(trace):
    assert shape(trace["observations"]) == [8, 16, 3, 64, 64]
    assert shape(trace["actions"]) == [8, 16, 6]


# ---------------------------------------------------------------- PILLAR 1: PERCEIVER IO
def test_vq_tokenizer(trace):
    rec = trace["rec"]
    (_, encoded), = only(rec, "to_code")
    assert shape(encoded) == [8, 256, 2, 8, 8]  # C=256, T'=2 (temporal stride 8), H'=W'=8
    (vq_args, quantized), = only(rec, "vq")
    # the seed flattens space+time to [8, 128, 256] for the VQ layer; ours quantises [8, 2, 8, 8, 256]
    vq_input = rearrange(vq_args[0], "b t h w d -> b (t h w) d")
    assert shape(vq_input) == [8, 128, 256]
    assert shape(rearrange(quantized.quantized, "b t h w d -> b (t h w) d")) == [8, 128, 256]
    assert quantized.loss.dim() == 0 and quantized.perplexity.dim() == 0
    token_indices = rearrange(quantized.indices, "b t h w -> b (t h w)")
    assert shape(token_indices) == [8, 128]
    assert 0 <= int(token_indices.min()) and int(token_indices.max()) <= 1023
    assert shape(quantized.indices) == [8, 2, 8, 8]  # [B, T', H_t, W_t]
    (_, encode_result), = only(rec, "VQPTTokenizer.encode", "calls")
    assert shape(encode_result.tokens) == [8, 16, 8, 8]  # back to T = 16
    assert encode_result.vq_loss.dim() == 0 and encode_result.perplexity.dim() == 0
    (_, decoded), = only(rec, "token_decoder")
    assert shape(decoded) == [128, 3, 64, 64]  # per frame
    assert shape(trace["out"]["tokenizer_reconstructions"]) == [8, 16, 3, 64, 64]  # decoded


def test_perceiver_context(trace):
    rec = trace["rec"]
    (embed_args, embeddings), = only(rec, "token_embed")
    assert shape(embed_args[0]) == [128, 64]  # token_seq: B*T frames x H_t*W_t tokens
    # the seed writes [128, 256] for "embed each token": each of the 64 tokens gets a 256-vector
    assert shape(embeddings) == [128, 64, 256]
    (cross_args, attended), = only(rec, "cross")
    assert shape(cross_args[0]) == [128, 128, 256]  # latent queries repeated over B*T frames
    assert shape(cross_args[1]) == [128, 64, 256]  # keys/values: the frame's token embeddings
    assert shape(attended) == [128, 128, 256]
    assert shape(attended.mean(dim=1)) == [128, 256]  # context_per_frame
    (args, context), = only(rec, "CausalPerceiverIO.extract_context", "calls")
    assert shape(args["videos"]) == [8, 16, 3, 64, 64]
    assert shape(context) == [8, 16, 256]


# ---------------------------------------------------------------- PILLAR 2 + 3: VAE + VRNN
def test_one_call_per_timestep(trace):
    rec = trace["rec"]
    for name in ("VAEEncoder.forward", "DPGMMPrior.forward", "LSTMLayer.forward", "AttentionSchema.forward",
                 "SlotAttention.forward", "VAEDecoder.forward"):
        assert len(rec.calls[name]) == 16, name
    assert len(rec.calls["CausalPerceiverIO.extract_context"]) == 1  # once, before the loop
    assert len(rec.calls["AimeWorldModel.forward_sequence"]) == 1


def test_initial_lstm_state(trace):
    args, _ = trace["rec"].calls["LSTMLayer.forward"][0]
    h, c = args["hx"]
    assert shape(h) == shape(c) == [1, 8, 512]  # [num_layers, B, hidden_dim]
    assert shape(h[-1]) == [8, 512]  # h_0
    assert not h.any() and not c.any()


def test_vae_encoder_and_reparameterisation(trace):
    rec = trace["rec"]
    for t, (args, z_params) in enumerate(rec.calls["VAEEncoder.forward"]):
        assert shape(args["x"]) == [8, 3, 64, 64]  # x_t
        assert shape(args["context"]) == [8, 256]  # c_t
        assert shape(z_params["mu"]) == shape(z_params["logvar"]) == [8, 36]
        torch.testing.assert_close(args["context"], trace["out"]["context"][:, t])
    stages = [shape(rec.hooks[f"encoder_stage{i}"][0][1]) for i in range(4)]
    assert stages == [[8, 64, 32, 32], [8, 128, 16, 16], [8, 256, 8, 8], [8, 512, 4, 4]]
    # z_t = mu + eps * std: [8, 36] each step, what the decoder and the LSTM receive
    for args, _ in rec.calls["VAEDecoder.forward"]:
        assert shape(args["z"]) == [8, 36]


def test_dpgmm_prior(trace):
    rec = trace["rec"]
    hidden = [torch.zeros(8, 512)] + [res.output for _, res in rec.calls["LSTMLayer.forward"]]
    for t, (args, params) in enumerate(rec.calls["DPGMMPrior.forward"]):
        h_c = args["h"]
        assert shape(h_c) == [8, 768]  # h || c = [8, 512 + 256]
        torch.testing.assert_close(h_c[:, :512], hidden[t])  # the state before step t's update
        assert args["n_samples"] == 10
        assert shape(params["kumar_a"]) == shape(params["kumar_b"]) == [8, 14]  # K-1 sticks
        assert shape(params["sticks"]) == [8, 14]  # v
        assert shape(params["pi"]) == [8, 15]
        assert shape(params["means"]) == shape(params["log_vars"]) == [8, 15, 36]  # mu_k, logvar_k
        assert shape(params["alpha"]) == [8, 10]
    for _, component_params in rec.hooks["component_net"]:
        assert shape(component_params) == [8, 1080]  # 2 * 36 * 15
        assert shape(rearrange(component_params, "b (k two d) -> b k two d", k=15, two=2)) == [8, 15, 2, 36]


def test_lstm_dynamics(trace):
    rec = trace["rec"]
    for t, (args, result) in enumerate(rec.calls["LSTMLayer.forward"]):
        assert shape(args["input"]) == [8, 298]  # [8, 36 + 256 + 6]
        torch.testing.assert_close(args["input"][:, 36:292], trace["out"]["context"][:, t])
        torch.testing.assert_close(args["input"][:, 292:], trace["actions"][:, t])
        assert shape(result.output) == [8, 512]  # h_t
        assert shape(result.state.h_n) == shape(result.state.c_n) == [1, 8, 512]


def test_attention_schema(trace):
    rec = trace["rec"]
    for _, phi_att in rec.hooks["features"]:
        assert shape(phi_att) == [8, 64, 21, 21]
    for args, (slots, attn) in rec.calls["SlotAttention.forward"]:
        assert shape(args["x"]) == [8, 441, 64]  # phi_seq: 21 * 21 positions
        assert shape(slots) == [8, 4, 64]
        assert shape(attn) == [8, 4, 441]
        assert shape(rearrange(attn, "b k (h w) -> b k h w", h=21)) == [8, 4, 21, 21]
    for (h_c_att,), _ in rec.hooks["top_down"]:
        assert shape(h_c_att) == [8, 768]
    out = trace["out"]
    assert shape(out["slot_masks"]) == [8, 16, 4, 21, 21]  # slot_maps per step
    assert shape(out["motion_fields"]) == [8, 16, 2, 21, 21]  # (dx, dy) per step
    for args, (A_t, coords) in rec.calls["AttentionSchema.forward"]:
        assert shape(args["observation"]) == [8, 3, 64, 64]
        assert shape(args["hidden_state"]) == [8, 512] and shape(args["context"]) == [8, 256]
        assert shape(A_t) == [8, 21, 21]
        assert shape(coords) == [8, 2]


def test_vae_decoder(trace):
    rec = trace["rec"]
    for args, x_hat in rec.calls["VAEDecoder.forward"]:
        assert shape(args["attention_map"]) == [8, 21, 21]
        assert shape(x_hat) == [8, 3, 64, 64]
    stages = [shape(rec.hooks[f"decoder_stage{i}"][0][1]) for i in range(4)]
    assert stages[:2] == [[8, 256, 8, 8], [8, 128, 16, 16]]  # the two attention-modulated stages
    assert stages[2] == [8, 64, 32, 32]


def test_stacked_outputs(trace):
    out = trace["out"]
    assert shape(out["latents"]) == [8, 16, 36]
    assert shape(out["reconstructions"]) == [8, 16, 3, 64, 64]
    assert shape(out["attention_maps"]) == [8, 16, 21, 21]
    assert shape(out["hidden_states"]) == [8, 16, 512]
    assert shape(out["mixture_weights"]) == [8, 16, 15]
    assert shape(out["slot_features"]) == [8, 16, 4, 64]
    assert shape(out["tokens"]) == [8, 16, 8, 8]
    assert shape(out["context"]) == [8, 16, 256]


# ---------------------------------------------------------------- PILLAR 5: LOSSES AND RGB
def test_losses_and_discriminator_scores(trace):
    losses = trace["losses"]
    assert list(losses.tasks) == ["elbo", "perceiver", "predictive", "adversarial"]
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.items().values())
    assert shape(trace["real_score"]) == shape(trace["fake_score"]) == [8, 1]
    assert ((trace["real_score"] > 0) & (trace["real_score"] < 1)).all()


def test_task_gradients_and_rgb(trace):
    trainer = trace["trainer"]
    P = sum(p.numel() for p in trainer.params)
    assert P > 1_000_000  # "D ~ millions"
    observations, actions = trace["observations"][:2, :2], trace["actions"][:2, :2]
    grads, _, _ = trainer.compute_task_gradients(observations, actions)
    assert shape(grads) == [4, P]
    assert (grads.norm(dim=1) > 0).all()  # every task reaches some parameter
    balanced = trainer.balancer.balance(grads)
    assert shape(balanced) == [P]
    assert torch.isfinite(balanced).all()
