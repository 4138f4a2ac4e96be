"""Pillar 1: Perceiver IO context extraction (VQ video tokenizer, causal Perceiver IO)."""

from typing import Annotated, NamedTuple

from jaxtyping import Float, Int
from torch import Tensor

from aimespec import Causal, Contract, FiniteLoss, InRange, IntRange, invariants


class EncodeResult(NamedTuple):
    tokens: Int[Tensor, "B T H_t W_t"]  # discrete indices in [0, num_codes-1]
    vq_loss: Float[Tensor, ""]
    perplexity: Float[Tensor, ""]


class VQPTTokenizer(Contract):
    """3-D convolutional VQ tokenizer: video to a token grid per frame and back."""

    pillar = "perceiver"

    @invariants(
        InRange("video", 0.0, 1.0),
        IntRange("tokens", "0", "num_codes-1"),
        FiniteLoss("vq_loss", nonnegative=True),
        InRange("perplexity", 1.0, float("inf"), atol=1e-4),
    )
    def encode(self, video: Float[Tensor, "B T C H W"]) -> EncodeResult:
        """video [B, T, C, H, W] -> (tokens [B, T, H_t, W_t], vq_loss scalar, perplexity scalar)."""
        ...

    @invariants(IntRange("tokens", "0", "num_codes-1"))
    def decode(self, tokens: Int[Tensor, "B T H_t W_t"]) -> Annotated[Float[Tensor, "B T C H W"], "reconstructed"]:
        """tokens [B, T, H_t, W_t] -> reconstructed [B, T, C, H, W]."""
        ...


class CausalPerceiverIO(Contract):
    """Learned latent queries cross-attend to token embeddings; context at t sees frames <= t."""

    pillar = "perceiver"

    @invariants(InRange("videos", 0.0, 1.0), Causal(axis="T"))
    def extract_context(self, videos: Float[Tensor, "B T C H W"]) -> Annotated[
        Float[Tensor, "B T context_dim"], "context"
    ]:
        """videos [B, T, C, H, W] -> context [B, T, context_dim]."""
        ...
