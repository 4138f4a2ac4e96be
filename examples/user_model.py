"""A small AIME-style world model written the way a user would: plain PyTorch, no annotations.

Check it against the contracts with

    aimespec check examples/user_model.py

Classes named as a contract (`DPGMMPrior`, `LSTMLayer`, ...) or decorated with
`@aimespec.implements("...")` are held to that contract on generated inputs, and
`build_model(cfg)`'s `forward_sequence` is run end to end with every component call in it
checked. The layers are deliberately light (strided convolutions, one linear layer where
the reference model has a stack) so that the whole check runs in a few seconds on a CPU.
"""

import torch
import torch.nn.functional as F
from torch import nn

import aimespec


class VQPTTokenizer(nn.Module):
    """Per-frame patch tokenizer: a strided conv, nearest-codebook lookup; decoding paints each token's colour."""

    def __init__(self, cfg):
        super().__init__()
        self.stride = cfg.token_downsample
        self.beta = cfg.vq_beta
        self.patchify = nn.Conv2d(cfg.image_channels, cfg.code_dim, self.stride, stride=self.stride)
        self.codebook = nn.Embedding(cfg.num_codes, cfg.code_dim)
        self.colour = nn.Linear(cfg.code_dim, cfg.image_channels)

    def encode(self, video):
        b, t = video.shape[:2]
        z_e = self.patchify(video.reshape(b * t, *video.shape[2:])).permute(0, 2, 3, 1)  # (b*t, h, w, code)
        flat = z_e.reshape(-1, z_e.shape[-1])
        book = self.codebook.weight
        codes = (flat @ book.T - 0.5 * (book * book).sum(dim=1)).argmax(dim=1)  # nearest code
        z_q = self.codebook(codes)
        vq_loss = F.mse_loss(z_q, flat.detach()) + self.beta * F.mse_loss(flat, z_q.detach())
        usage = torch.bincount(codes, minlength=book.shape[0]).float()
        perplexity = torch.exp(torch.special.entr(usage / usage.sum()).sum())
        tokens = codes.reshape(b, t, z_e.shape[1], z_e.shape[2])
        return tokens, vq_loss, perplexity

    def decode(self, tokens):
        b, t, h, w = tokens.shape
        colours = torch.sigmoid(self.colour(self.codebook(tokens)))  # (b, t, h, w, c)
        frames = colours.permute(0, 1, 4, 2, 3).reshape(b * t, -1, h, w)
        frames = F.interpolate(frames, scale_factor=self.stride, mode="nearest")
        return frames.reshape(b, t, *frames.shape[1:])


class CausalPerceiverIO(nn.Module):
    """Frame features, a few learned queries attending to them, then a causal running mean over time."""

    def __init__(self, cfg):
        super().__init__()
        self.grid = 4
        self.frame = nn.Linear(cfg.image_channels * self.grid * self.grid, cfg.context_dim)
        self.queries = nn.Parameter(torch.randn(4, cfg.context_dim) * 0.02)
        self.out = nn.Linear(cfg.context_dim, cfg.context_dim)

    def extract_context(self, videos):
        b, t = videos.shape[:2]
        frames = videos.reshape(b * t, *videos.shape[2:])
        pooled = F.adaptive_avg_pool2d(frames, self.grid).flatten(1)
        feats = torch.tanh(self.frame(pooled)).reshape(b, t, -1)  # (b, t, ctx)
        scores = torch.einsum("qc,btc->btq", self.queries, feats).softmax(dim=-1)
        mixed = feats * scores.mean(dim=-1, keepdim=True)
        steps = torch.arange(1, t + 1, device=videos.device, dtype=videos.dtype).reshape(1, t, 1)
        running = mixed.cumsum(dim=1) / steps  # frame t only sees frames <= t
        return self.out(running)


class DPGMMPrior(nn.Module):
    """Kumaraswamy stick-breaking weights, Gaussian components, Gamma concentration draws."""

    def __init__(self, cfg):
        super().__init__()
        self.k, self.d = cfg.max_components, cfg.latent_dim
        width = cfg.hidden_dim + cfg.context_dim
        self.sticks = nn.Linear(width, 2 * (self.k - 1))
        self.components = nn.Linear(width, 2 * self.k * self.d)
        self.concentration = nn.Linear(width, 2)

    def forward(self, h, n_samples=10):
        a_raw, b_raw = self.sticks(h).chunk(2, dim=-1)
        kumar_a = F.softplus(a_raw) + 1e-3
        kumar_b = F.softplus(b_raw) + 1e-3
        u = torch.rand_like(kumar_a).clamp(1e-4, 1 - 1e-4)
        v = (1 - (1 - u) ** (1 / kumar_b)) ** (1 / kumar_a)
        v = v.clamp(1e-5, 1 - 1e-5)
        leftover = torch.cumprod(1 - v, dim=-1)
        before = torch.cat([torch.ones_like(v[:, :1]), leftover[:, :-1]], dim=-1)
        pi = torch.cat([v * before, leftover[:, -1:]], dim=-1)
        params = self.components(h).reshape(h.shape[0], self.k, 2, self.d)
        shape, rate = (F.softplus(self.concentration(h)) + 1.0).unbind(dim=-1)
        alpha = torch.distributions.Gamma(shape, rate).rsample((n_samples,)).transpose(0, 1)
        return {
            "pi": pi,
            "means": params[:, :, 0],
            "log_vars": params[:, :, 1],
            "kumar_a": kumar_a,
            "kumar_b": kumar_b,
            "alpha": alpha.clamp_min(1e-6),
            "sticks": v,
        }


class LSTMLayer(nn.Module):
    """A stack of LSTM cells run for one step; states are (num_layers, B, hidden)."""

    def __init__(self, cfg):
        super().__init__()
        sizes = [cfg.lstm_input_dim] + [cfg.hidden_dim] * (cfg.lstm_layers - 1)
        self.cells = nn.ModuleList(nn.LSTMCell(n, cfg.hidden_dim) for n in sizes)

    def forward(self, input, hx):
        h0, c0 = hx
        hs, cs = [], []
        x = input
        for i, cell in enumerate(self.cells):
            h, c = cell(x, (h0[i], c0[i]))
            hs.append(h)
            cs.append(c)
            x = h
        return x, (torch.stack(hs), torch.stack(cs))


class SlotAttention(nn.Module):
    """Slots compete for input positions (softmax over slots), refined with a GRU cell."""

    def __init__(self, cfg, iterations=2):
        super().__init__()
        dim = cfg.attention_dim
        self.n_slots, self.iterations, self.scale = cfg.num_semantic_slots, iterations, dim ** -0.5
        self.slot_init = nn.Parameter(torch.randn(1, self.n_slots, dim) * 0.1)
        self.norm = nn.LayerNorm(dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.gru = nn.GRUCell(dim, dim)

    def forward(self, x, seed_slots=None):
        b = x.shape[0]
        slots = seed_slots if seed_slots is not None else self.slot_init.expand(b, -1, -1)
        x = self.norm(x)
        keys, values = self.k(x), self.v(x)
        attn = None
        for _ in range(self.iterations):
            logits = torch.einsum("bkd,bnd->bkn", self.q(slots), keys) * self.scale
            attn = logits.softmax(dim=1)
            weights = attn / attn.sum(dim=-1, keepdim=True).clamp_min(1e-8)
            updates = torch.einsum("bkn,bnd->bkd", weights, values)
            slots = self.gru(updates.reshape(-1, updates.shape[-1]), slots.reshape(-1, slots.shape[-1]))
            slots = slots.reshape(b, self.n_slots, -1)
        return slots, attn


class AttentionSchema(nn.Module):
    """Bottom-up slot maps plus a top-down guess from (h, c), fused into one map over positions."""

    def __init__(self, cfg):
        super().__init__()
        self.res = cfg.attention_resolution
        self.features = nn.Conv2d(cfg.image_channels, cfg.attention_dim, 3, padding=1)
        self.slots = SlotAttention(cfg)
        self.top_down = nn.Linear(cfg.hidden_dim + cfg.context_dim, self.res * self.res)
        self.slot_gate = nn.Linear(cfg.hidden_dim, cfg.num_semantic_slots)
        self.last_slots = None

    def forward(self, observation, hidden_state, context, fused_feat=None):
        if fused_feat is None:
            fused_feat = self.features(F.adaptive_avg_pool2d(observation, self.res))
        seq = fused_feat.flatten(2).transpose(1, 2)  # (b, res*res, attention_dim)
        slots, attn = self.slots(seq)
        self.last_slots = slots
        gate = self.slot_gate(hidden_state).softmax(dim=-1)
        bottom_up = torch.einsum("bk,bkn->bn", gate, attn)
        top_down = self.top_down(torch.cat([hidden_state, context], dim=-1))
        probs = (bottom_up.clamp_min(1e-6).log() + top_down).softmax(dim=-1)
        grid = torch.linspace(-1, 1, self.res, device=probs.device)
        probs_2d = probs.reshape(-1, self.res, self.res)
        coords = torch.stack([(probs_2d.sum(1) * grid).sum(-1), (probs_2d.sum(2) * grid).sum(-1)], dim=-1)
        return probs_2d, coords.clamp(-1, 1)


class VAEEncoder(nn.Module):
    """Two strided convolutions, pooled, joined with the context: mu and logvar."""

    def __init__(self, cfg):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(cfg.image_channels, 16, 4, stride=4), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=4), nn.ReLU()
        )
        self.head = nn.Linear(32 * 4 + cfg.context_dim, 2 * cfg.latent_dim)

    def forward(self, x, context):
        feats = F.adaptive_avg_pool2d(self.convs(x), 2).flatten(1)
        mu, logvar = self.head(torch.cat([feats, context], dim=-1)).chunk(2, dim=-1)
        return {"mu": mu, "logvar": logvar}


@aimespec.implements("VAEDecoder")
class FrameDecoder(nn.Module):
    """z to a coarse feature map, modulated by the attention map resized to it, upsampled to the frame."""

    def __init__(self, cfg):
        super().__init__()
        self.side = max(cfg.input_dim // 8, 1)
        self.size = cfg.input_dim
        self.fc = nn.Linear(cfg.latent_dim, 16 * self.side * self.side)
        self.to_rgb = nn.Conv2d(16, cfg.image_channels, 3, padding=1)

    def forward(self, z, attention_map):
        feats = self.fc(z).reshape(-1, 16, self.side, self.side)
        att = F.interpolate(attention_map.unsqueeze(1), size=feats.shape[-2:], mode="bilinear", align_corners=False)
        feats = feats * (1 + att * att.shape[-1] * att.shape[-2])
        feats = F.interpolate(feats, size=(self.size, self.size), mode="nearest")
        return torch.sigmoid(self.to_rgb(feats))


class Discriminator(nn.Module):
    """Frame features averaged over time, a sigmoid score per video."""

    def __init__(self, cfg):
        super().__init__()
        self.conv = nn.Conv2d(cfg.image_channels, 8, 4, stride=4)
        self.score = nn.Linear(8, 1)

    def forward(self, video):
        b, t = video.shape[:2]
        feats = F.relu(self.conv(video.reshape(b * t, *video.shape[2:]))).mean(dim=(2, 3))
        return torch.sigmoid(self.score(feats.reshape(b, t, -1).mean(dim=1)))


@aimespec.implements("RGB")
class GradientRotator:
    """A simple stand-in for RGB: unit task gradients averaged, scaled by their mean norm."""

    def __init__(self, cfg):
        self.cfg = cfg

    def balance(self, grads):
        norms = grads.norm(dim=1, keepdim=True).clamp_min(1e-8)
        direction = (grads / norms).mean(dim=0)
        return direction * norms.mean()


class TinyWorld(nn.Module):
    """The seed's per-timestep loop over the components above."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = VQPTTokenizer(cfg)
        self.perceiver = CausalPerceiverIO(cfg)
        self.encoder = VAEEncoder(cfg)
        self.prior = DPGMMPrior(cfg)
        self.lstm = LSTMLayer(cfg)
        self.schema = AttentionSchema(cfg)
        self.decoder = FrameDecoder(cfg)

    def forward_sequence(self, observations, actions):
        b, t = observations.shape[:2]
        tokens, _, _ = self.tokenizer.encode(observations)
        context = self.perceiver.extract_context(observations)
        h = observations.new_zeros(self.cfg.lstm_layers, b, self.cfg.hidden_dim)
        c = torch.zeros_like(h)
        out = {k: [] for k in ("latents", "reconstructions", "attention_maps", "hidden_states",
                               "mixture_weights", "slot_features")}
        for step in range(t):
            x_t, c_t, a_t = observations[:, step], context[:, step], actions[:, step]
            z_params = self.encoder(x_t, c_t)
            z_t = z_params["mu"] + torch.randn_like(z_params["mu"]) * torch.exp(0.5 * z_params["logvar"])
            prior = self.prior(torch.cat([h[-1], c_t], dim=-1), self.cfg.prior_alpha_samples)
            h_t, (h, c) = self.lstm(torch.cat([z_t, c_t, a_t], dim=-1), (h, c))
            attention, _ = self.schema(x_t, h_t, c_t)
            out["latents"].append(z_t)
            out["reconstructions"].append(self.decoder(z_t, attention))
            out["attention_maps"].append(attention)
            out["hidden_states"].append(h_t)
            out["mixture_weights"].append(prior["pi"])
            out["slot_features"].append(self.schema.last_slots)
        stacked = {k: torch.stack(v, dim=1) for k, v in out.items()}
        stacked.update(context=context, tokens=tokens)
        return stacked


def build_model(cfg):
    return TinyWorld(cfg)
