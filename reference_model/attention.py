"""The attention schema A_t = g(x_t, h_t, c_t): bottom-up slot attention fused with a top-down motion field.

`SlotAttention` follows Locatello et al., "Object-Centric Learning with Slot Attention"
(NeurIPS 2020): slots compete for the input positions through a softmax over *slots*. The
schema's bottom-up path is a small conv encoder pooled to `H_att x W_att` with a soft
positional embedding (the same paper's encoder); its top-down path reads `h || c`.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from jaxtyping import Float
from torch import Tensor, nn

from aimespec import AimeConfig, checked
from contracts.attention import SchemaResult, SlotResult
from reference_model import noise

ATTN_EPS = 1e-8  # added to the slot attention before the weighted mean (Locatello et al.)
MIX_EPS = 1e-6  # floor of the bottom-up mixture before its log
MAX_SHIFT = 0.5  # the motion field is tanh-bounded to half the normalised image extent
DIST_EPS = 1e-8  # smoothing of attention maps in `predict_next` / `dynamics_loss`


class SchemaOutput(NamedTuple):
    """What `AttentionSchema.attend` computes: the contract's `SchemaResult` and what the
    losses read (the slots, their masks, the motion field, the slot diversity loss)."""

    attention_probs_2d: Float[Tensor, "B H_att W_att"]
    regularized_coords: Float[Tensor, "B 2"]
    slots: Float[Tensor, "B K_slots attention_dim"]
    slot_masks: Float[Tensor, "B K_slots H_att W_att"]  # slot attention, sums to 1 over slots
    motion_field: Float[Tensor, "B 2 H_att W_att"]  # (dx, dy) in normalised [-1, 1] units
    diversity_loss: Float[Tensor, ""]

    def result(self) -> SchemaResult:
        """The part `AttentionSchema.forward`'s contract describes."""
        return SchemaResult(self.attention_probs_2d, self.regularized_coords)


class SlotAttention(nn.Module):
    """Slot attention (Locatello et al. 2020): `slot_iterations` rounds of competition + GRU update."""

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim, hidden = cfg.attention_dim, cfg.slot_mlp_hidden
        self.scale = dim**-0.5
        self.norm_inputs = nn.LayerNorm(dim)
        self.norm_slots = nn.LayerNorm(dim, bias=False)  # a shift here is cancelled by the softmax over slots
        self.norm_mlp = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.slots_mu = nn.Parameter(torch.zeros(1, 1, dim))
        self.slots_log_sigma = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.xavier_uniform_(self.slots_mu)
        nn.init.xavier_uniform_(self.slots_log_sigma)

    def init_slots(self, x: Float[Tensor, "B N attention_dim"]) -> Float[Tensor, "B K_slots attention_dim"]:
        """slots = mu + exp(log_sigma) * N(0, I), the noise drawn through `reference_model.noise`."""
        eps = noise.randn(x.shape[0], self.cfg.num_semantic_slots, self.cfg.attention_dim, like=x)
        return self.slots_mu + torch.exp(self.slots_log_sigma) * eps

    @checked("SlotAttention.forward")
    def forward(
        self,
        x: Float[Tensor, "B N attention_dim"],
        seed_slots: Float[Tensor, "B K_slots attention_dim"] | None = None,
    ) -> SlotResult:
        """x [B, N, attention_dim] (N = H_att*W_att) -> (slots [B, K_slots, attention_dim], attn [B, K_slots, N])."""
        x = self.norm_inputs(x)
        k, v = self.to_k(x), self.to_v(x)
        slots = self.init_slots(x) if seed_slots is None else seed_slots
        K = slots.shape[1]
        attn = x.new_empty(0)
        for _ in range(self.cfg.slot_iterations):
            prev = slots
            q = self.to_q(self.norm_slots(slots)) * self.scale
            logits = einsum(q, k, "b k d, b n d -> b k n")
            attn = torch.softmax(logits, dim=1)  # slots compete for every position
            weights = attn + ATTN_EPS
            weights = weights / weights.sum(dim=-1, keepdim=True)  # weighted mean over positions
            updates = einsum(weights, v, "b k n, b n d -> b k d")
            slots = self.gru(rearrange(updates, "b k d -> (b k) d"), rearrange(prev, "b k d -> (b k) d"))
            slots = rearrange(slots, "(b k) d -> b k d", k=K)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return SlotResult(slots, attn)


def coordinate_grid(res: int, like: Tensor) -> Float[Tensor, "2 res res"]:
    """Pixel-centre coordinates (x, y) in [-1, 1] (grid_sample's align_corners=False convention)."""
    centres = (2.0 * torch.arange(res, device=like.device, dtype=like.dtype) + 1.0) / res - 1.0
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs, ys])


def diversity(slots: Float[Tensor, "B K_slots attention_dim"]) -> Float[Tensor, ""]:
    """Mean squared cosine similarity over distinct slot pairs: >= 0, and 0 iff the slots are orthogonal.

    Squaring (rather than shifting `cos` by 1) rewards orthogonal, not opposite, slots, and is
    smooth at 0. With a single slot there are no pairs and the loss is 0.
    """
    K = slots.shape[1]
    if K < 2:
        return slots.sum() * 0.0
    unit = F.normalize(slots, dim=-1)
    cos = einsum(unit, unit, "b i d, b j d -> b i j")
    sq = cos**2  # mean over the K*(K-1) off-diagonal pairs, without boolean indexing (meta-friendly)
    off_diagonal = sq.sum(dim=(-2, -1)) - sq.diagonal(dim1=-2, dim2=-1).sum(-1)
    return (off_diagonal / (K * (K - 1))).mean()


class AttentionSchema(nn.Module):
    """Bottom-up slot maps, weighted by top-down slot salience and fused with a top-down motion field.

    - bottom-up: conv 5x5 (C -> attention_dim) at full resolution, adaptive average pooling to
      `H_att x W_att` (any resolution 1..input_dim), conv 3x3 + conv 1x1, plus a soft positional
      embedding of (x, y, 1-x, 1-y); flattened to [B, N, attention_dim]; LayerNorm + MLP;
      `SlotAttention` gives slot masks [B, K_slots, H_att, W_att].
    - top-down: an MLP on `h || c` predicts the motion field [B, 2, H_att, W_att] (dx, dy; tanh,
      at most MAX_SHIFT) and a salience logit per slot.
    - fusion: logits = log(sum_k softmax(salience)_k mask_k) + conv3x3([masks, motion]); a softmax
      over all H_att*W_att positions gives the attention map; `regularized_coords` is its
      expectation of the pixel-centre grid (x, y), clamped to [-1, 1].
    `attend` returns a `SchemaOutput` (the result, the slots, masks, motion field and the
    slot diversity loss, see `diversity`); `forward` is the contract's view of it.
    """

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim, res, K = cfg.attention_dim, cfg.attention_resolution, cfg.num_semantic_slots
        self.features = nn.Sequential(
            nn.Conv2d(cfg.image_channels, dim, 5, padding=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(res),
            nn.Conv2d(dim, dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(dim, dim, 1),
        )
        self.position = nn.Linear(4, dim)
        self.encode = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.slot_attention = SlotAttention(cfg)
        self.top_down = nn.Sequential(
            nn.Linear(cfg.hidden_dim + cfg.context_dim, cfg.prior_hidden),
            nn.SiLU(),
            nn.Linear(cfg.prior_hidden, 2 * res * res + K),
        )
        self.fusion = nn.Conv2d(K + 2, 1, 3, padding=1, bias=False)  # a softmax over positions follows

    def positions(self, like: Tensor) -> Float[Tensor, "N attention_dim"]:
        grid = rearrange(coordinate_grid(self.cfg.attention_resolution, like), "two h w -> (h w) two")
        unit = (grid + 1.0) / 2.0  # [0, 1]
        return self.position(torch.cat([unit, 1.0 - unit], dim=-1))

    def forward(
        self,
        observation: Float[Tensor, "B C H W"],
        hidden_state: Float[Tensor, "B hidden_dim"],
        context: Float[Tensor, "B context_dim"],
        fused_feat: Float[Tensor, "B attention_dim H_att W_att"] | None = None,
    ) -> SchemaResult:
        """observation [B, C, H, W], hidden_state, context -> (attention [B, H_att, W_att], coords [B, 2])."""
        return self.attend(observation, hidden_state, context, fused_feat).result()

    @checked("AttentionSchema.forward", view=SchemaOutput.result)
    def attend(
        self,
        observation: Float[Tensor, "B C H W"],
        hidden_state: Float[Tensor, "B hidden_dim"],
        context: Float[Tensor, "B context_dim"],
        fused_feat: Float[Tensor, "B attention_dim H_att W_att"] | None = None,
    ) -> SchemaOutput:
        """`forward`'s result and what the losses read (held to `forward`'s contract)."""
        res = self.cfg.attention_resolution
        feat = self.features(observation) if fused_feat is None else fused_feat  # [B, attention_dim, H_att, W_att]
        seq = rearrange(feat, "b c h w -> b (h w) c") + self.positions(feat)  # [B, N, attention_dim]
        slots, attn = self.slot_attention(self.encode(seq))
        masks = rearrange(attn, "b k (h w) -> b k h w", h=res, w=res)

        top = self.top_down(torch.cat([hidden_state, context], dim=-1))
        motion = MAX_SHIFT * torch.tanh(
            rearrange(top[:, : 2 * res * res], "b (two h w) -> b two h w", two=2, h=res, w=res)
        )
        salience = torch.softmax(top[:, 2 * res * res :], dim=-1)  # [B, K_slots]

        mixture = einsum(salience, masks, "b k, b k h w -> b h w")
        fused = rearrange(self.fusion(torch.cat([masks, motion], dim=1)), "b 1 h w -> b h w")
        logits = torch.log(mixture + MIX_EPS) + fused
        probs = rearrange(torch.softmax(rearrange(logits, "b h w -> b (h w)"), dim=-1), "b (h w) -> b h w", h=res)
        coords = einsum(probs, coordinate_grid(res, probs), "b h w, two h w -> b two").clamp(-1.0, 1.0)

        return SchemaOutput(probs, coords, slots, masks, motion, diversity(slots))

    @staticmethod
    def predict_next(
        attention_map: Float[Tensor, "B H_att W_att"], motion_field: Float[Tensor, "B 2 H_att W_att"]
    ) -> Float[Tensor, "B H_att W_att"]:
        """Carry the attention map along the motion field: next(p) = current(p - motion(p)), renormalised.

        Backward warping with `grid_sample` (bilinear, zeros outside): mass moved off the image
        is lost, and a small floor keeps the renormalised map a proper distribution.
        """
        res = attention_map.shape[-1]
        base = rearrange(coordinate_grid(res, attention_map), "two h w -> 1 h w two")
        grid = base - rearrange(motion_field, "b two h w -> b h w two")
        moved = F.grid_sample(
            rearrange(attention_map, "b h w -> b 1 h w"),
            grid,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )
        moved = rearrange(moved, "b 1 h w -> b h w").clamp_min(0.0) + DIST_EPS
        return moved / moved.sum(dim=(-2, -1), keepdim=True)

    @staticmethod
    def dynamics_loss(
        predicted: Float[Tensor, "B H_att W_att"], observed: Float[Tensor, "B H_att W_att"]
    ) -> Float[Tensor, ""]:
        """Batch mean of KL(observed || predicted) over positions: >= 0, 0 iff the maps agree.

        Both maps get a DIST_EPS floor and are renormalised first, so the KL is one between two
        proper distributions (Gibbs' inequality); rounding below 0 is clamped.
        """
        p = observed.clamp_min(0.0) + DIST_EPS
        q = predicted.clamp_min(0.0) + DIST_EPS
        p = rearrange(p / p.sum(dim=(-2, -1), keepdim=True), "b h w -> b (h w)")
        q = rearrange(q / q.sum(dim=(-2, -1), keepdim=True), "b h w -> b (h w)")
        kl = (p * (torch.log(p) - torch.log(q))).sum(-1).clamp_min(0.0)
        return kl.mean()
