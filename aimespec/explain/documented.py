"""The seed's five documented shape errors ("Common Shape Errors & Solutions"), as data.

One record per error: the document's title and error text, its cause written in the
config's dimension symbols, and the fix. `diagnose` reproduces them live, `--explain`
names them, and the check engine fills a violation's `documented_error` / `fix` from them.
"""

from dataclasses import asdict, dataclass
from typing import Any

from aimespec.core.errors import InputError


@dataclass(frozen=True)
class DocumentedError:
    number: int  # 1..5, the document's numbering
    title: str  # the document's heading
    document_error: str  # the error text exactly as the document prints it
    document_cause: str  # the document's own cause sentence
    cause: str  # the cause in the config's symbols
    fix: str  # what to do, in one or two sentences
    substance: str  # what makes a finding this error, whichever way it surfaced (SPEC)
    wrong_code: str  # the document's WRONG snippet (or the code its cause describes)
    right_code: str  # the document's RIGHT snippet

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_ERRORS: tuple[DocumentedError, ...] = (
    DocumentedError(
        number=1,
        title="Dimension Mismatch in LSTM Input",
        document_error="RuntimeError: Expected input batch_size (128) to match target batch_size (8)",
        document_cause="Passing [B*T, D] instead of [B, D] to LSTM in per-timestep mode.",
        cause=(
            "the LSTM input is [B*T, D + context_dim + A] (z, c, a concatenated without taking timestep t), "
            "while its states (h, c) are [num_layers, B, hidden_dim]: B*T rows meet B states"
        ),
        fix=(
            "loop over t and slice each sequence first: z[:, t] [B, D], c[:, t] [B, context_dim], "
            "a[:, t] [B, A]; feed torch.cat([z_t, c_t, a_t], dim=-1) [B, D + context_dim + A] per step"
        ),
        substance="a B*T-flattened tensor where [B, ...] was expected (or the reverse)",
        wrong_code=(
            "lstm_input = torch.cat([z, c, a], dim=-1)  # [B*T, D] if z,c,a not sliced\n"
            "h, c = lstm(lstm_input, (h_prev, c_prev))"
        ),
        right_code=(
            "for t in range(T):\n"
            "    z_t = z[:, t]  # [B, D]\n"
            "    c_t = c[:, t]  # [B, context_dim]\n"
            "    a_t = a[:, t]  # [B, A]\n"
            "    lstm_input = torch.cat([z_t, c_t, a_t], dim=-1)  # [B, 36+256+6]\n"
            "    h_t, c_t = lstm(lstm_input, (h_prev, c_prev))"
        ),
    ),
    DocumentedError(
        number=2,
        title="Attention Map Size Mismatch",
        document_error=(
            "RuntimeError: The size of tensor a (21) must match the size of tensor b (64) "
            "at non-singleton dimension 2"
        ),
        document_cause="Trying to modulate decoder feature map [B, C, 64, 64] with attention [B, 21, 21].",
        cause=(
            "a decoder feature map [B, C, H', W'] is multiplied by the attention map [B, H_att, W_att] "
            "as it is: H_att x W_att is not the feature map's H' x W' (a power-of-two fraction of H x W)"
        ),
        fix=(
            "resize the attention to the feature map first: F.interpolate(attention_map.unsqueeze(1), "
            "size=(H', W'), mode='bilinear', align_corners=False) gives [B, 1, H', W'], which broadcasts "
            "over the C channels"
        ),
        substance="an attention map not resized to the feature map it modulates",
        wrong_code="modulated_features = features * attention_map  # [B, C, 64, 64] * [B, 21, 21]",
        right_code=(
            "attention_upsampled = F.interpolate(\n"
            "    attention_map.unsqueeze(1),  # [B, 1, 21, 21]\n"
            "    size=(64, 64),\n"
            "    mode='bilinear',\n"
            "    align_corners=False\n"
            ")  # [B, 1, 64, 64]\n"
            "modulated_features = features * attention_upsampled  # [B, C, 64, 64]"
        ),
    ),
    DocumentedError(
        number=3,
        title="VQ Token Shape After 3D Convolution",
        document_error="RuntimeError: shape '[8, 16, 8, 8]' is invalid for input of size 1024",
        document_cause="Temporal dimension changed after 3D convolution with temporal downsampling.",
        cause=(
            "the tokenizer's 3-D convolutions downsample time, so the VQ indices hold "
            "B*T_enc*H_t*W_t entries (T_enc = ceil(T / temporal_downsample)), yet they are viewed "
            "as [B, T, H_t, W_t]"
        ),
        fix=(
            "read T_enc from the encoded tensor (encoded.shape[2]), view the indices as "
            "[B, T_enc, H_t, W_t], then bring time back to T (F.interpolate(..., size=(T, H_t, W_t), "
            "mode='nearest')) to get [B, T, H_t, W_t]"
        ),
        substance="the token time axis not brought back to T after temporal downsampling",
        wrong_code="tokens = vq_indices.view(B, T, H_t, W_t)  # vq_indices holds B*T_enc*H_t*W_t entries",
        right_code=(
            "T_enc = encoded.shape[2]  # 2\n"
            "tokens = vq_indices.view(B, T_enc, H_t, W_t)  # [8, 2, 8, 8]\n"
            "tokens = F.interpolate(\n"
            "    tokens.float().unsqueeze(1),  # [8, 1, 2, 8, 8]\n"
            "    size=(T, H_t, W_t),\n"
            "    mode='nearest'\n"
            ").squeeze(1).long()  # [8, 16, 8, 8]"
        ),
    ),
    DocumentedError(
        number=4,
        title="DPGMM Component Parameter Shape",
        document_error="RuntimeError: mat1 and mat2 shapes cannot be multiplied (8x768 and 512x1080)",
        document_cause="Component network expects `hidden_dim` but receives `hidden_dim + context_dim`.",
        cause=(
            "the prior's input width and its component network disagree: one side is hidden_dim (h_t alone), "
            "the other hidden_dim + context_dim (h_t concatenated with c_t); the network outputs 2*K*D"
        ),
        fix=(
            "feed the prior torch.cat([h_t, c_t], dim=-1) [B, hidden_dim + context_dim] and build its "
            "networks with in_features = hidden_dim + context_dim"
        ),
        substance="the prior's input width (hidden_dim vs hidden_dim + context_dim)",
        wrong_code=(
            "prior_input = h_t  # [B, 512]\n"
            "prior_params = dpgmm_prior(prior_input)  # Network expects [B, 768]"
        ),
        right_code=(
            "prior_input = torch.cat([h_t, c_t], dim=-1)  # [B, 512+256] = [B, 768]\n"
            "prior_params = dpgmm_prior(prior_input)"
        ),
    ),
    DocumentedError(
        number=5,
        title="Slot Attention Input Not Flattened",
        document_error="RuntimeError: Expected 3D tensor [B, N, D], got 4D [B, C, H, W]",
        document_cause="Feeding spatial feature map directly to slot attention without flattening.",
        cause=(
            "slot attention expects flattened features [B, N, attention_dim] (N = H_att*W_att) but received "
            "the spatial feature map [B, attention_dim, H_att, W_att]"
        ),
        fix=(
            "flatten space and move channels last before slot attention: "
            "rearrange(feature_map, 'b c h w -> b (h w) c') (= feature_map.flatten(2).transpose(1, 2)) "
            "gives [B, N, attention_dim]; reshape attn [B, K_slots, N] back to [B, K_slots, H_att, W_att] "
            "if needed"
        ),
        substance="a spatial feature map fed where flattened [B, N, attention_dim] features were expected",
        wrong_code="slots, attn = slot_attention(feature_map)  # [B, 64, 21, 21]",
        right_code=(
            "B, C, H, W = feature_map.shape\n"
            "feature_seq = feature_map.flatten(2).transpose(1, 2)  # [B, H*W, C] = [B, 441, 64]\n"
            "slots, attn = slot_attention(feature_seq)\n"
            "# slots: [B, K, 64]\n"
            "# attn: [B, K, 441]\n"
            "attn_spatial = attn.view(B, K, H, W)  # [B, K, 21, 21]"
        ),
    ),
)

NUMBERS: tuple[int, ...] = tuple(e.number for e in _ERRORS)


def documented_errors() -> list[DocumentedError]:
    """The document's five errors, in its order."""
    return list(_ERRORS)


def documented_error(n: int) -> DocumentedError:
    """Error `n` (1..5); any other number raises a one-sentence InputError (a ValueError)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(_ERRORS):
        raise InputError(f"the document has errors 1 to {len(_ERRORS)}, not {n!r}")
    return _ERRORS[n - 1]


__all__ = ["NUMBERS", "DocumentedError", "documented_error", "documented_errors"]
