"""The user model with the seed's documented shape errors in it: what `aimespec check` reports.

    aimespec check examples/buggy_model.py

Each bug is marked `# BUG n` (n = the document's error number). The LSTM, the VAE encoder
and slot attention are imported from `user_model.py`: classes a file merely imports are
not checked on their own, but they are held to their contracts when this file's
components and `build_model`'s model call them.
"""

import torch
import torch.nn.functional as F
from torch import nn
from user_model import LSTMLayer, SlotAttention, VAEEncoder


class VQPTTokenizer(nn.Module):
    """A tokenizer that pools time (T -> T_enc) and never brings it back."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.patchify = nn.Conv2d(cfg.image_channels, cfg.code_dim, cfg.token_downsample, stride=cfg.token_downsample)
        self.codebook = nn.Embedding(cfg.num_codes, cfg.code_dim)
        self.colour = nn.Linear(cfg.code_dim, cfg.image_channels)

    def encode(self, video):
        b, t = video.shape[:2]
        t_enc = -(-t // self.cfg.temporal_downsample)
        pad = t_enc * self.cfg.temporal_downsample - t
        video = torch.cat([video[:, :1].expand(b, pad, *video.shape[2:]), video], dim=1)
        clips = video.reshape(b, t_enc, -1, *video.shape[2:]).mean(dim=2)  # time pooled to T_enc
        z_e = self.patchify(clips.flatten(0, 1)).permute(0, 2, 3, 1)
        flat = z_e.reshape(-1, z_e.shape[-1])
        codes = (flat @ self.codebook.weight.T).argmax(dim=1)
        vq_loss = F.mse_loss(self.codebook(codes), flat.detach())
        tokens = codes.reshape(b, t_enc, z_e.shape[1], z_e.shape[2])
        return tokens, vq_loss, torch.ones(())  # BUG 3: tokens are [B, T_enc, H_t, W_t]

    def decode(self, tokens):
        b, t = tokens.shape[:2]
        colours = torch.sigmoid(self.colour(self.codebook(tokens))).permute(0, 1, 4, 2, 3)
        frames = F.interpolate(colours.flatten(0, 1), scale_factor=self.cfg.token_downsample, mode="nearest")
        return frames.reshape(b, t, *frames.shape[1:])


class CausalPerceiverIO(nn.Module):
    """Per-frame context vectors, returned flattened over batch and time."""

    def __init__(self, cfg):
        super().__init__()
        self.frame = nn.Linear(cfg.image_channels * 16, cfg.context_dim)

    def extract_context(self, videos):
        frames = videos.flatten(0, 1)  # (B*T, C, H, W)
        pooled = F.adaptive_avg_pool2d(frames, 4).flatten(1)
        return torch.tanh(self.frame(pooled))  # BUG 1: [B*T, context_dim], not [B, T, context_dim]


class DPGMMPrior(nn.Module):
    """A prior whose networks were sized for h alone."""

    def __init__(self, cfg):
        super().__init__()
        self.k, self.d = cfg.max_components, cfg.latent_dim
        self.sticks = nn.Linear(cfg.hidden_dim, 2 * (self.k - 1))
        self.components = nn.Linear(cfg.hidden_dim, 2 * self.k * self.d)  # in_features should be hidden + context

    def forward(self, h, n_samples=10):
        params = self.components(h)  # BUG 4: h is [B, hidden_dim + context_dim], the layer takes hidden_dim
        params = params.reshape(h.shape[0], self.k, 2, self.d)
        a, b = F.softplus(self.sticks(h)).chunk(2, dim=-1)
        v = torch.rand_like(a).clamp(1e-3, 1 - 1e-3)
        rest = torch.cumprod(1 - v, dim=-1)
        pi = torch.cat([v * torch.cat([torch.ones_like(v[:, :1]), rest[:, :-1]], -1), rest[:, -1:]], -1)
        alpha = torch.ones(h.shape[0], n_samples)
        return {"pi": pi, "means": params[:, :, 0], "log_vars": params[:, :, 1], "kumar_a": a + 1e-3,
                "kumar_b": b + 1e-3, "alpha": alpha}


class AttentionSchema(nn.Module):
    """Feeds slot attention the spatial feature map as it is."""

    def __init__(self, cfg):
        super().__init__()
        self.res = cfg.attention_resolution
        self.features = nn.Conv2d(cfg.image_channels, cfg.attention_dim, 3, padding=1)
        self.slots = SlotAttention(cfg)
        self.top_down = nn.Linear(cfg.hidden_dim + cfg.context_dim, self.res * self.res)

    def forward(self, observation, hidden_state, context, fused_feat=None):
        feature_map = self.features(F.adaptive_avg_pool2d(observation, self.res))  # (B, attention_dim, res, res)
        _, attn = self.slots(feature_map)  # BUG 5: not flattened to [B, N, attention_dim]
        logits = attn.sum(dim=1) + self.top_down(torch.cat([hidden_state, context], dim=-1))
        probs = logits.softmax(dim=-1).reshape(-1, self.res, self.res)
        return probs, torch.zeros(probs.shape[0], 2)


class VAEDecoder(nn.Module):
    """Modulates full-resolution features with the attention map at attention resolution."""

    def __init__(self, cfg):
        super().__init__()
        self.size = cfg.input_dim
        self.fc = nn.Linear(cfg.latent_dim, 8 * 4 * 4)
        self.to_rgb = nn.Conv2d(8, cfg.image_channels, 1)

    def forward(self, z, attention_map):
        feats = F.interpolate(self.fc(z).reshape(-1, 8, 4, 4), size=(self.size, self.size), mode="nearest")
        feats = feats * attention_map.unsqueeze(1)  # BUG 2: [B, 8, H, W] * [B, 1, H_att, W_att]
        return torch.sigmoid(self.to_rgb(feats))


class BuggyWorld(nn.Module):
    """Runs the LSTM once over every frame at once instead of once per timestep."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = VQPTTokenizer(cfg)
        self.perceiver = CausalPerceiverIO(cfg)
        self.encoder = VAEEncoder(cfg)
        self.lstm = LSTMLayer(cfg)

    def forward_sequence(self, observations, actions):
        b, t = observations.shape[:2]
        tokens, _, _ = self.tokenizer.encode(observations)
        context = self.perceiver.extract_context(observations)  # (B*T, context_dim)
        z_params = self.encoder(observations.flatten(0, 1), context)
        z = z_params["mu"]  # (B*T, D)
        h = observations.new_zeros(self.cfg.lstm_layers, b, self.cfg.hidden_dim)
        lstm_input = torch.cat([z, context, actions.flatten(0, 1)], dim=-1)  # (B*T, D + context_dim + A)
        h_t, _ = self.lstm(lstm_input, (h, torch.zeros_like(h)))  # BUG 1: B*T rows, B states
        return {"latents": z.reshape(b, t, -1), "tokens": tokens, "hidden_states": h_t}


def build_model(cfg):
    return BuggyWorld(cfg)
