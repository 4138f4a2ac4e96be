"""Pillar 1: the VQ video tokenizer and the causal Perceiver IO context extractor.

`VQPTTokenizer` (VQ-VAE, van den Oord et al. 2017) turns a video into a grid of discrete
tokens per frame; `CausalPerceiverIO` (Perceiver IO, Jaegle et al. 2021) turns each
frame's tokens into one context vector, seeing only frames up to that frame.

Causal temporal layout (REFERENCE_NOTES, "causality of CausalPerceiverIO"): with stride
`s = temporal_downsample`, the encoder's features are left-padded with `s - 1` copies of
the first frame before a stride-`s` temporal convolution, so encoded block `j` covers
frames `s*j - (s-1) .. s*j` and there are `ceil(T / s)` blocks (`[B, 256, 2, 8, 8]` at the
default, `T = 16`). Frame `t` gets the tokens of block `t // s`, the latest block ending at
or before `t`: no frame's tokens depend on a later frame.
"""

from typing import Annotated, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from jaxtyping import Float, Int
from torch import Tensor, nn

from aimespec import AimeConfig, checked
from contracts.perceiver import EncodeResult
from reference_model.vq import VectorQuantizer


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm (per example, per frame): never BatchNorm, whose statistics mix examples."""
    return nn.GroupNorm(min(32, channels) if channels % min(32, channels) == 0 else 1, channels)


def _stage_widths(cfg: AimeConfig) -> list[int]:
    """Channels of the tokenizer's spatial stages: tokenizer_width, doubled per stride-2 stage."""
    stages = cfg.token_downsample.bit_length() - 1  # log2 of a power of two
    return [cfg.tokenizer_width * 2**i for i in range(max(stages, 1))]


class Tokenized(NamedTuple):
    """What `VQPTTokenizer.tokenize` computes: the contract's `EncodeResult` plus the
    straight-through quantised latents per frame, which the perceiver loss decodes."""

    tokens: Int[Tensor, "B T H_t W_t"]
    vq_loss: Float[Tensor, ""]
    perplexity: Float[Tensor, ""]
    quantized: Float[Tensor, "B T code_dim H_t W_t"]  # gradients reach the encoder (straight-through)

    def encode_result(self) -> EncodeResult:
        """The part `VQPTTokenizer.encode`'s contract describes."""
        return EncodeResult(self.tokens, self.vq_loss, self.perplexity)


class PerceiverOutput(NamedTuple):
    """What `CausalPerceiverIO.perceive` computes: the context and the tokenizer's outputs."""

    context: Float[Tensor, "B T context_dim"]
    tokens: Int[Tensor, "B T H_t W_t"]
    vq_loss: Float[Tensor, ""]
    perplexity: Float[Tensor, ""]
    quantized: Float[Tensor, "B T code_dim H_t W_t"]

    def contract_result(self) -> Annotated[Float[Tensor, "B T context_dim"], "context"]:
        """The part `CausalPerceiverIO.extract_context`'s contract describes."""
        return self.context


class _FrameEncoder(nn.Module):
    """Per-frame 2-D stages: log2(token_downsample) stride-2 convolutions (or one stride-1)."""

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__()
        widths = _stage_widths(cfg)
        stride = 1 if cfg.token_downsample == 1 else 2
        layers: list[nn.Module] = []
        in_ch = cfg.image_channels
        for width in widths:
            layers += [nn.Conv2d(in_ch, width, 4 if stride == 2 else 3, stride, 1, bias=False), _norm(width), nn.SiLU()]
            in_ch = width
        self.net = nn.Sequential(*layers)

    def forward(self, frames: Float[Tensor, "N C H W"]) -> Float[Tensor, "N width H_t W_t"]:
        return self.net(frames)


class _FrameDecoder(nn.Module):
    """Per-frame 2-D decoder: code vectors on the token grid -> an image in [0, 1]."""

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__()
        widths = _stage_widths(cfg)
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.code_dim, widths[-1], 3, 1, 1, bias=False), _norm(widths[-1]), nn.SiLU()
        ]
        if cfg.token_downsample > 1:
            outs = [*widths[-2::-1], widths[0]]  # mirrored: 256 -> 128 -> 64 -> 64 at the default
            in_ch = widths[-1]
            for out in outs:
                layers += [nn.ConvTranspose2d(in_ch, out, 4, 2, 1, bias=False), _norm(out), nn.SiLU()]
                in_ch = out
        layers += [nn.Conv2d(widths[0], cfg.image_channels, 3, 1, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, codes: Float[Tensor, "N code_dim H_t W_t"]) -> Float[Tensor, "N C H W"]:
        return self.net(codes)


class VQPTTokenizer(nn.Module):
    """Video -> token grid per frame (causal 3-D conv encoder + VQ) and tokens -> video.

    `tokenize(video)` returns a `Tokenized` record: the contract's (tokens, vq_loss,
    perplexity) and the straight-through quantised latents per frame, which
    `decode_latents` turns back into frames WITH gradients reaching the encoder (the
    perceiver's reconstruction loss). `encode` is the contract's view of it.
    """

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        s = cfg.temporal_downsample
        width = _stage_widths(cfg)[-1]
        self.frame_encoder = _FrameEncoder(cfg)
        # Causal temporal downsampling: kernel = stride = s over the left-padded time axis.
        self.temporal = nn.Conv3d(width, width, kernel_size=(s, 1, 1), stride=(s, 1, 1))
        self.to_code = nn.Conv3d(width, cfg.code_dim, kernel_size=1)
        self.vq = VectorQuantizer(cfg.num_codes, cfg.code_dim, cfg.vq_beta)
        self.decoder = _FrameDecoder(cfg)

    def frame_blocks(self, T: int) -> Int[Tensor, "T"]:
        """The encoded block each frame reads: `t // s`, the latest block ending at or before t."""
        return torch.arange(T) // self.cfg.temporal_downsample

    def encode_latents(self, video: Float[Tensor, "B T C H W"]) -> Float[Tensor, "B code_dim T_enc H_t W_t"]:
        """The continuous encoding z_e: `[B, code_dim, ceil(T / s), H_t, W_t]` (causal blocks)."""
        B = video.shape[0]
        feats = self.frame_encoder(rearrange(video, "b t c h w -> (b t) c h w"))
        feats = rearrange(feats, "(b t) c h w -> b c t h w", b=B)
        # Left-pad s - 1 copies of the first frame: block j covers frames s*j-(s-1) .. s*j;
        # a trailing partial block (frames after the last multiple of s) is dropped by the stride.
        feats = F.pad(feats, (0, 0, 0, 0, self.cfg.temporal_downsample - 1, 0), mode="replicate")
        return self.to_code(F.silu(self.temporal(feats)))

    @checked("VQPTTokenizer.encode", view=Tokenized.encode_result)
    def tokenize(self, video: Float[Tensor, "B T C H W"]) -> Tokenized:
        """video [B, T, C, H, W] -> tokens [B, T, H_t, W_t], vq_loss, perplexity and the
        straight-through latents [B, T, code_dim, H_t, W_t] (held to `encode`'s contract)."""
        T = video.shape[1]
        z_e = rearrange(self.encode_latents(video), "b d t h w -> b t h w d")
        q = self.vq(z_e)
        blocks = self.frame_blocks(T).to(video.device)
        tokens = q.indices[:, blocks]  # [B, T_enc, H_t, W_t] -> [B, T, H_t, W_t]
        quantized = rearrange(q.quantized[:, blocks], "b t h w d -> b t d h w")
        return Tokenized(tokens, q.loss, q.perplexity, quantized)

    def encode(self, video: Float[Tensor, "B T C H W"]) -> EncodeResult:
        """video [B, T, C, H, W] -> (tokens [B, T, H_t, W_t], vq_loss scalar, perplexity scalar)."""
        return self.tokenize(video).encode_result()

    def decode_latents(self, codes: Float[Tensor, "B T code_dim H_t W_t"]) -> Float[Tensor, "B T C H W"]:
        """Code vectors per frame -> frames in [0, 1] (the per-frame 2-D decoder)."""
        B = codes.shape[0]
        frames = self.decoder(rearrange(codes, "b t d h w -> (b t) d h w"))
        return rearrange(frames, "(b t) c h w -> b t c h w", b=B)

    @checked("VQPTTokenizer.decode")
    def decode(self, tokens: Int[Tensor, "B T H_t W_t"]) -> Annotated[Float[Tensor, "B T C H W"], "reconstructed"]:
        """tokens [B, T, H_t, W_t] -> reconstructed [B, T, C, H, W]."""
        codes = rearrange(self.vq.lookup(tokens), "b t h w d -> b t d h w")
        return self.decode_latents(codes)


class _Attention(nn.Module):
    """Multi-head attention: queries from `x`, keys and values from `inputs`."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, x: Float[Tensor, "N n d"], inputs: Float[Tensor, "N m d"], causal: bool = False
    ) -> Float[Tensor, "N n d"]:
        q = rearrange(self.to_q(x), "b n (h e) -> b h n e", h=self.heads)
        k, v = rearrange(self.to_kv(inputs), "b m (two h e) -> two b h m e", two=2, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out(rearrange(out, "b h n e -> b n (h e)"))


def _mlp(dim: int, ratio: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, ratio * dim), nn.GELU(), nn.Linear(ratio * dim, dim))


class _CrossAttentionBlock(nn.Module):
    """Pre-LayerNorm cross-attention (latents attend to inputs), residual, then a residual MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_latents = nn.LayerNorm(dim)
        self.norm_inputs = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.mlp = _mlp(dim)

    def forward(self, latents: Float[Tensor, "N n d"], inputs: Float[Tensor, "N m d"]) -> Float[Tensor, "N n d"]:
        latents = latents + self.attn(self.norm_latents(latents), self.norm_inputs(inputs))
        return latents + self.mlp(latents)


class _SelfAttentionBlock(nn.Module):
    """Pre-LayerNorm self-attention (causal: position i sees positions <= i), residual MLP."""

    def __init__(self, dim: int, heads: int, causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        self.norm = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.mlp = _mlp(dim)

    def forward(self, x: Float[Tensor, "N n d"]) -> Float[Tensor, "N n d"]:
        h = self.norm(x)
        x = x + self.attn(h, h, causal=self.causal)
        return x + self.mlp(x)


class CausalPerceiverIO(nn.Module):
    """Per-frame context: learned latents cross-attend to the frame's tokens, then causal time mixing.

    Each frame's `H_t * W_t` token embeddings (codebook index embedding + learned 2-D
    position) are read by `num_latent_perceiver` learned latent queries (one cross-attention
    block, `perceiver_blocks` latent self-attention blocks, pre-LayerNorm, residual + MLP),
    whose mean is the frame's vector; a causally masked self-attention over time then lets
    frame `t` use frames `<= t`. Tokens are causal too (see the module docstring), so the
    context at frame `t` never depends on a later frame.

    `perceive(videos)` returns a `PerceiverOutput` (the context and the tokenizer's outputs,
    what the perceiver loss reads); `extract_context` is the contract's view of it.
    """

    def __init__(self, cfg: AimeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, heads, grid = cfg.context_dim, cfg.perceiver_heads, cfg.token_grid
        self.tokenizer = VQPTTokenizer(cfg)
        self.token_embed = nn.Embedding(cfg.num_codes, d)
        self.row_embed = nn.Parameter(0.02 * torch.randn(grid, d))
        self.col_embed = nn.Parameter(0.02 * torch.randn(grid, d))
        self.latents = nn.Parameter(0.02 * torch.randn(cfg.num_latent_perceiver, d))
        self.cross = _CrossAttentionBlock(d, heads)
        self.blocks = nn.ModuleList(_SelfAttentionBlock(d, heads) for _ in range(cfg.perceiver_blocks))
        self.temporal = _SelfAttentionBlock(d, heads, causal=True)
        self.norm_out = nn.LayerNorm(d)

    def position_embedding(self) -> Float[Tensor, "H_t*W_t context_dim"]:
        """The learned 2-D position embedding: a row vector plus a column vector per cell."""
        grid = self.row_embed[:, None, :] + self.col_embed[None, :, :]
        return rearrange(grid, "h w d -> (h w) d")

    def frame_context(self, tokens: Int[Tensor, "B T H_t W_t"]) -> Float[Tensor, "B T context_dim"]:
        """Each frame's tokens -> one vector per frame (no mixing across frames yet)."""
        B = tokens.shape[0]
        inputs = self.token_embed(rearrange(tokens, "b t h w -> (b t) (h w)")) + self.position_embedding()
        latents = repeat(self.latents, "n d -> bt n d", bt=inputs.shape[0])
        latents = self.cross(latents, inputs)  # [B*T, num_latents, d]
        for block in self.blocks:
            latents = block(latents)
        return rearrange(latents.mean(dim=1), "(b t) d -> b t d", b=B)

    @checked("CausalPerceiverIO.extract_context", view=PerceiverOutput.contract_result)
    def perceive(self, videos: Float[Tensor, "B T C H W"]) -> PerceiverOutput:
        """videos [B, T, C, H, W] -> context [B, T, context_dim] and the tokenizer's outputs
        (held to `extract_context`'s contract)."""
        tokenized = self.tokenizer.tokenize(videos)
        context = self.norm_out(self.temporal(self.frame_context(tokenized.tokens)))
        return PerceiverOutput(context, *tokenized)

    def extract_context(
        self, videos: Float[Tensor, "B T C H W"]
    ) -> Annotated[Float[Tensor, "B T context_dim"], "context"]:
        """videos [B, T, C, H, W] -> context [B, T, context_dim]."""
        return self.perceive(videos).context
