"""`AimeWorldModel`: the five pillars over a sequence, as the seed's "Forward Pass" runs them.

    context = perceiver.perceive(observations).context         # [B, T, context_dim], once
    h, c = zeros [num_layers, B, hidden_dim]
    for t in range(T):
        z_params = encoder(x_t, c_t);  z_t = mu + eps * std       # q(z_t | x_t, c_t)
        prior_params = prior(h_{t-1} || c_t)                      # p(z_t | h_{t-1}, c_t), [B, 768]
        h_t, (h, c) = lstm(z_t || c_t || a_t, (h, c))             # [B, 298] -> [B, 512]
        A_t, coords = attention_schema(x_t, h_t, c_t)             # [B, 21, 21]
        x_hat_t = decoder(z_t, A_t)                               # [B, 3, 64, 64]
    stack every per-step output over time (dim 1)

The prior reads `h_{t-1}`, the state before step t's LSTM update: it is the prior of z_t
(the seed's loop writes `h_t` before reassigning it). The discriminator lives here too
(`self.discriminator`) so that one module holds the whole model; the Trainer gives it its
own optimiser.
"""

import torch
from jaxtyping import Float
from torch import Tensor, nn

from aimespec import AimeConfig, checked
from contracts.world import WorldOutputs
from reference_model import noise
from reference_model.adversarial import Discriminator
from reference_model.attention import AttentionSchema
from reference_model.dynamics import LSTMLayer
from reference_model.perceiver import CausalPerceiverIO
from reference_model.prior import DPGMMPrior
from reference_model.vae import VAEDecoder, VAEEncoder

# The prior's per-step outputs -> the field they are stacked under (dim 1 = time).
_PRIOR_FIELDS = {
    "pi": "mixture_weights",
    "log_pi": "log_mixture_weights",
    "means": "prior_means",
    "log_vars": "prior_log_vars",
    "kumar_a": "kumar_a",
    "kumar_b": "kumar_b",
    "sticks": "sticks",
    "alpha": "alpha",
    "gamma_shape": "gamma_shape",
    "gamma_rate": "gamma_rate",
}


class AimeWorldModel(nn.Module):
    """The AIME world model: Perceiver IO context, VAE, DPGMM prior, LSTM dynamics,
    attention schema and the video discriminator, built from one `AimeConfig`."""

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.perceiver = CausalPerceiverIO(cfg)
        self.encoder = VAEEncoder(cfg)
        self.prior = DPGMMPrior(cfg)
        self.lstm = LSTMLayer(cfg)
        self.attention_schema = AttentionSchema(cfg)
        self.decoder = VAEDecoder(cfg)
        self.discriminator = Discriminator(cfg)

    @classmethod
    def from_config(cls, cfg: AimeConfig) -> "AimeWorldModel":
        return cls(cfg)

    def generator_parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter except the discriminator's (the generator's side)."""
        disc = {id(p) for p in self.discriminator.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in disc]

    @checked("AimeWorldModel.forward_sequence", view=WorldOutputs.contract_result)
    def forward_sequence(
        self, observations: Float[Tensor, "B T C H W"], actions: Float[Tensor, "B T A"]
    ) -> WorldOutputs:
        """observations [B, T, C, H, W] in [0, 1], actions [B, T, A] -> the stacked outputs.

        A `WorldOutputs` record (also a mapping): the seed's outputs (latents,
        reconstructions, attention_maps, context, tokens, hidden_states, mixture_weights,
        slot_features) and what the losses read: the posterior (mu, logvar), the prior's
        parameters per step, slot masks, motion fields, attention coordinates, the
        tokenizer's outputs and the slot diversity loss.
        """
        perceived = self.perceiver.perceive(observations)  # context [B, T, context_dim], once
        steps = self.unroll(observations, actions, perceived.context)
        diversity = torch.stack(steps.pop("diversity_loss")).mean()  # one 0-dim loss per step
        stacked = {key: torch.stack(values, dim=1) for key, values in steps.items()}
        return WorldOutputs(
            **stacked,
            context=perceived.context,
            tokens=perceived.tokens,
            diversity_loss=diversity,
            vq_loss=perceived.vq_loss,
            perplexity=perceived.perplexity,
            tokenizer_reconstructions=self.perceiver.tokenizer.decode_latents(perceived.quantized),
        )

    def unroll(
        self, observations: Float[Tensor, "B T C H W"], actions: Float[Tensor, "B T A"],
        context: Float[Tensor, "B T context_dim"],
    ) -> dict[str, list[Tensor]]:
        """The recurrent loop over t: every per-step output, by the field it is stacked under."""
        h, c = self.lstm.initial_state(observations.shape[0], observations)  # [num_layers, B, hidden_dim] each
        steps: dict[str, list[Tensor]] = {}

        def keep(key: str, value: Tensor) -> None:
            steps.setdefault(key, []).append(value)

        # [T, B, C, H, W]: each step's frame one contiguous block (one copy of the sequence). The results
        # are bitwise the same; a checked forward reads each frame twice (the encoder's and the schema's
        # [0, 1] checks), and a strided frame's min/max cost ~3x a block's in the middle of a forward.
        frames = observations.transpose(0, 1).contiguous()
        for t in range(observations.shape[1]):
            x_t = frames[t]  # [B, C, H, W]
            c_t = context[:, t]  # [B, context_dim]
            a_t = actions[:, t]  # [B, A]

            # --- VAE encoder q(z_t | x_t, c_t) and the reparameterisation trick ---
            z_params = self.encoder(x_t, c_t)
            mu, logvar = z_params["mu"], z_params["logvar"]  # [B, D]
            std = torch.exp(0.5 * logvar)
            z_t = mu + noise.randn(*std.shape, like=std) * std  # [B, D]

            # --- DPGMM prior p(z_t | h_{t-1}, c_t): input h || c, [B, hidden_dim + context_dim] ---
            prior = self.prior.infer(torch.cat([h[-1], c_t], dim=-1), n_samples=self.cfg.prior_alpha_samples)

            # --- LSTM dynamics h_t = f(h_{t-1}, z_t, c_t, a_t) ---
            lstm_input = torch.cat([z_t, c_t, a_t], dim=-1)  # [B, D + context_dim + A]
            h_t, (h, c) = self.lstm(lstm_input, (h, c))  # h_t [B, hidden_dim]

            # --- attention schema A_t = g(x_t, h_t, c_t) ---
            schema = self.attention_schema.attend(x_t, h_t, c_t)  # A_t [B, H_att, W_att], coords [B, 2]

            # --- VAE decoder p(x_t | z_t, A_t) ---
            x_hat_t = self.decoder(z_t, schema.attention_probs_2d)  # [B, C, H, W]

            keep("latents", z_t)
            keep("mu", mu)
            keep("logvar", logvar)
            keep("reconstructions", x_hat_t)
            keep("attention_maps", schema.attention_probs_2d)
            keep("attention_coords", schema.regularized_coords)
            keep("hidden_states", h_t)
            keep("cell_states", c[-1])
            for key, name in _PRIOR_FIELDS.items():
                keep(name, getattr(prior, key))
            keep("slot_features", schema.slots)
            keep("slot_masks", schema.slot_masks)
            keep("motion_fields", schema.motion_field)
            keep("diversity_loss", schema.diversity_loss)
        return steps


def build_model(cfg: AimeConfig) -> AimeWorldModel:
    """The reference world model for `cfg` (what `aimespec check` builds from a model file)."""
    return AimeWorldModel(cfg)


__all__ = ["AimeWorldModel", "build_model"]
