"""`diagnose N`: reproduce one of the seed's documented shape errors live, at the current config.

For each error, small `nn` modules are built from the config's sizes and fed the way the
document's WRONG snippet feeds them; the real PyTorch error text is captured, the cause is
written in the config's symbols with their numbers, and the document's RIGHT snippet is run
and its shapes checked (`fix_verified`). Where the config makes the WRONG code *not* fail
(e.g. `T = 1`, so `B*T = B`), the diagnosis says so instead of pretending.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from aimespec.core.config import AimeConfig
from aimespec.core.dims import evaluate, format_shape, is_plain, substitute
from aimespec.core.errors import InputError
from aimespec.core.symbols import symbol_values
from aimespec.explain.documented import DocumentedError, documented_error, documented_errors
from aimespec.explain.engine import explain


@dataclass
class Diagnosis:
    error: int
    title: str
    document_error: str  # the seed's text
    raw_error: str  # what the WRONG code really raised here ("" when it ran without error)
    raw_error_type: str  # RuntimeError, ValueError, ... ("" when nothing was raised)
    reproduced: bool  # the WRONG code failed, and for this error's reason
    cause: str  # in the config's symbols, with numbers
    fix: str
    fix_verified: bool  # the RIGHT code ran and produced the expected shapes
    wrong_code: str  # what was run, with this config's shapes
    right_code: str
    fix_shapes: dict[str, list[int]] = field(default_factory=dict)  # what the RIGHT code produced
    note: str = ""  # anything the reader must know (e.g. why the WRONG code did not fail)
    variants: list[dict[str, str]] = field(default_factory=list)  # other phrasings and what they raise
    recognised_as: int | None = None  # the documented error `--explain` names for raw_error
    batch: int = 0
    seq_len: int = 0

    def to_json(self) -> dict[str, Any]:
        from aimespec.core.version import __version__

        return {
            "version": __version__, "error": self.error, "title": self.title, "raw_error": self.raw_error,
            "cause": self.cause, "fix": self.fix, "fix_verified": self.fix_verified,
            "document_error": self.document_error, "raw_error_type": self.raw_error_type,
            "reproduced": self.reproduced, "wrong_code": self.wrong_code, "right_code": self.right_code,
            "fix_shapes": self.fix_shapes, "note": self.note, "variants": self.variants,
            "recognised_as": self.recognised_as, "batch": self.batch, "seq_len": self.seq_len,
        }


class _Algebra:
    """Writes sizes as the config's symbols: `eq("B*T")` -> `128 = B*T = 8*16`."""

    def __init__(self, cfg: AimeConfig, B: int, T: int) -> None:
        self.v = symbol_values(cfg, B, T)

    def val(self, expr: str) -> int:
        value = evaluate(expr, self.v)
        assert value is not None, f"{expr} names a symbol the table lacks"
        return value

    def eq(self, expr: str) -> str:
        if is_plain(expr):
            return f"{self.val(expr)} = {expr}"
        return f"{self.val(expr)} = {expr} = {substitute(expr, self.v)}"

    def shape(self, *exprs: str) -> str:
        return f"{format_shape(exprs)} = {format_shape(self.val(e) for e in exprs)}"


@dataclass
class _Run:
    raw_error: str = ""
    raw_error_type: str = ""
    reproduced: bool = False
    cause: str = ""
    wrong_code: str = ""
    fix_verified: bool = False
    fix_shapes: dict[str, list[int]] = field(default_factory=dict)
    note: str = ""
    variants: list[dict[str, str]] = field(default_factory=list)


def _raises(fn: Callable[[], Any]) -> tuple[str, str]:
    """Run fn; return (exception type, message) or ("", "") when it did not raise."""
    try:
        fn()
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        return type(exc).__name__, str(exc)
    return "", ""


def _variant(run: _Run, code: str, fn: Callable[[], Any]) -> None:
    kind, text = _raises(fn)
    run.variants.append({"code": code, "raw_error": text, "raw_error_type": kind})


# --- Error 1: B*T rows fed to an LSTM whose states hold B -----------------------------------------
def _error1(cfg: AimeConfig, B: int, T: int, s: _Algebra) -> _Run:
    D, ctx, A, hid, L = cfg.latent_dim, cfg.context_dim, cfg.action_dim, cfg.hidden_dim, cfg.lstm_layers
    lstm = nn.LSTM(D + ctx + A, hid, num_layers=L)
    z, c, a = torch.randn(B, T, D), torch.randn(B, T, ctx), torch.randn(B, T, A)
    h0, c0 = torch.zeros(L, B, hid), torch.zeros(L, B, hid)
    # WRONG: z, c, a not sliced per timestep -> [B*T, D + context_dim + A]
    flat = [rearrange(x, "b t d -> (b t) d") for x in (z, c, a)]
    lstm_input = torch.cat(flat, dim=-1)
    run = _Run(wrong_code=(
        f"lstm = nn.LSTM({D + ctx + A}, {hid}, num_layers={L})  # D + context_dim + A -> hidden_dim\n"
        f"lstm_input = torch.cat([z, c, a], dim=-1)  # [B*T, D + context_dim + A] = {list(lstm_input.shape)}\n"
        f"out, (h, c) = lstm(lstm_input.unsqueeze(0), (h_prev, c_prev))  # states [{L}, {B}, {hid}]"))
    run.raw_error_type, run.raw_error = _raises(lambda: lstm(lstm_input.unsqueeze(0), (h0, c0)))
    run.reproduced = bool(run.raw_error) and B * T != B
    cell = nn.LSTMCell(D + ctx + A, hid)
    _variant(run, "nn.LSTMCell: cell(lstm_input, (h_prev[0], c_prev[0]))",
             lambda: cell(lstm_input, (h0[0], c0[0])))
    targets = torch.zeros(B, dtype=torch.long)
    _variant(run, "a per-step loss on the unsliced rows: F.cross_entropy(head(lstm_input) [B*T, K], target [B])",
             lambda: F.cross_entropy(lstm_input[:, : cfg.max_components], targets))
    run.cause = (f"the LSTM input is {s.shape('B*T', 'D + context_dim + A')} ({s.eq('B*T')}; "
                 f"{s.eq('D + context_dim + A')}) because z, c, a were concatenated without taking timestep t, "
                 f"while its states are {s.shape('num_layers', 'B', 'hidden_dim')}: "
                 f"B*T = {B * T} rows meet B = {B} states")
    if B * T == B:
        run.note = (f"at T = {T}, B*T = B = {B}: the unsliced input has the same batch size as the states, "
                    "so the WRONG code does not fail here (it is still wrong for any T > 1)")
    # RIGHT: one step per t, each slice [B, ...]
    h, cs, outs = h0, c0, []
    for t in range(T):
        step = torch.cat([z[:, t], c[:, t], a[:, t]], dim=-1)
        out, (h, cs) = lstm(step.unsqueeze(0), (h, cs))
        outs.append(out.squeeze(0))
    hidden = torch.stack(outs, dim=1)
    run.fix_shapes = {"lstm_input": [B, D + ctx + A], "h_t": list(outs[-1].shape), "h_n": list(h.shape),
                      "c_n": list(cs.shape), "hidden_states": list(hidden.shape)}
    run.fix_verified = (list(outs[-1].shape) == [B, hid] and list(h.shape) == [L, B, hid]
                        and list(cs.shape) == [L, B, hid] and list(hidden.shape) == [B, T, hid])
    return run


# --- Error 2: decoder features times an attention map that was never resized ---------------------
def _error2(cfg: AimeConfig, B: int, T: int, s: _Algebra) -> _Run:
    C, H, W, Ha = cfg.vae_channels[0], cfg.input_dim, cfg.input_dim, cfg.attention_resolution
    features = torch.randn(B, C, H, W)
    attention_map = torch.randn(B, Ha * Ha).softmax(-1).reshape(B, Ha, Ha)
    run = _Run(wrong_code=(
        f"features = decoder_stage(...)  # [B, C, H, W] = {list(features.shape)}\n"
        f"modulated_features = features * attention_map  # attention_map [B, H_att, W_att] = {[B, Ha, Ha]}"))
    run.raw_error_type, run.raw_error = _raises(lambda: features * attention_map)
    run.reproduced = bool(run.raw_error) and Ha not in (1, W)
    stages = [H // 2**k for k in range(1, len(cfg.vae_channels)) if H // 2**k != Ha]
    if stages:
        small = torch.randn(B, cfg.vae_channels[-1], stages[-1], stages[-1])
        _variant(run, f"a decoder stage at {stages[-1]}x{stages[-1]}: features * attention_map.unsqueeze(1)",
                 lambda: small * attention_map.unsqueeze(1))
    run.cause = (f"the decoder feature map is [B, C, H, W] = {[B, C, H, W]} (C = vae_channels[0] = {C}) and the "
                 f"attention map is {s.shape('B', 'H_att', 'W_att')}: " + (
                     f"broadcasting lines up W = {W} against W_att = {Ha}, which is not resized to the feature map"
                     if Ha != W else f"H_att = H = {H}, so the attention needs no resizing at this config"))
    if Ha == 1:
        run.note = ("at this config H_att = W_att = 1: a 1x1 map broadcasts against any H x W, so Error 2 cannot "
                    "occur; " + (f"what the product raises ({run.raw_error}) is the batch axis meeting the "
                                 "channel axis, not Error 2" if run.raw_error else "the product runs"))
    elif Ha == W:
        run.note = (f"at this config H_att = H = {H}: the attention already has the feature map's size, so "
                    "Error 2 cannot occur; " + ("what the product raises is the missing channel axis "
                                                "(attention_map.unsqueeze(1)), not Error 2" if run.raw_error
                                                else "the product runs"))
    # RIGHT: interpolate to the feature map's size, with a channel axis
    up = F.interpolate(attention_map.unsqueeze(1), size=(H, W), mode="bilinear", align_corners=False)
    modulated = features * up
    run.fix_shapes = {"attention_upsampled": list(up.shape), "modulated_features": list(modulated.shape)}
    run.fix_verified = list(up.shape) == [B, 1, H, W] and modulated.shape == features.shape
    return run


# --- Error 3: VQ indices of a temporally downsampled video viewed with T --------------------------
def _error3(cfg: AimeConfig, B: int, T: int, s: _Algebra) -> _Run:
    td, sd, Ht = cfg.temporal_downsample, cfg.token_downsample, cfg.token_grid
    encoder = nn.Conv3d(cfg.image_channels, cfg.code_dim, kernel_size=(td, sd, sd), stride=(td, sd, sd))
    codebook = torch.randn(cfg.num_codes, cfg.code_dim)
    video = torch.rand(B, T, cfg.image_channels, cfg.input_dim, cfg.input_dim)
    x = rearrange(video, "b t c h w -> b c t h w")
    x = F.pad(x, (0, 0, 0, 0, (-T) % td, 0))  # causal: pad the past so T is a multiple of the stride
    encoded = encoder(x)  # [B, code_dim, T_enc, H_t, W_t]
    vq_input = rearrange(encoded, "b c t h w -> b (t h w) c")
    vq_indices = torch.cdist(vq_input, codebook.expand(B, -1, -1)).argmin(-1)  # [B, T_enc*H_t*W_t]
    T_enc = encoded.shape[2]
    run = _Run(wrong_code=(
        f"encoded = encoder(video)  # [B, code_dim, T_enc, H_t, W_t] = {list(encoded.shape)}\n"
        f"vq_indices = quantize(encoded)  # [B, T_enc*H_t*W_t] = {list(vq_indices.shape)}\n"
        f"tokens = vq_indices.view(B, T, H_t, W_t)  # view({B}, {T}, {Ht}, {Ht})"))
    run.raw_error_type, run.raw_error = _raises(lambda: vq_indices.view(B, T, Ht, Ht))
    run.reproduced = bool(run.raw_error) and T_enc != T
    _variant(run, "rearrange(vq_indices, 'b (t h w) -> b t h w', t=T, h=H_t, w=W_t)",
             lambda: rearrange(vq_indices, "b (t h w) -> b t h w", t=T, h=Ht, w=Ht))
    run.cause = (f"the tokenizer's 3-D convolution strides time by temporal_downsample = {td}, so the indices "
                 f"hold {s.eq('B*T_enc*H_t*W_t')} entries (T_enc = ceil(T / {td}) = {T_enc}), " + (
                     f"but the view asks for {s.shape('B', 'T', 'H_t', 'W_t')}, {s.eq('B*T*H_t*W_t')} entries"
                     if T_enc != T else "exactly what the view [B, T, H_t, W_t] needs, since T_enc = T"))
    if T_enc == T:
        run.note = (f"at this config T_enc = T = {T} (temporal_downsample = {td}): time is not downsampled, "
                    "so the view succeeds and Error 3 cannot occur")
    # RIGHT: view with T_enc, then bring time back to T (nearest)
    tokens = vq_indices.view(B, T_enc, Ht, Ht)
    tokens = F.interpolate(tokens.float().unsqueeze(1), size=(T, Ht, Ht), mode="nearest").squeeze(1).long()
    run.fix_shapes = {"encoded": list(encoded.shape), "tokens_enc": [B, T_enc, Ht, Ht], "tokens": list(tokens.shape)}
    run.fix_verified = (list(tokens.shape) == [B, T, Ht, Ht] and T_enc == cfg.encoded_length(T)
                        and tokens.dtype == torch.long
                        and 0 <= int(tokens.min()) and int(tokens.max()) < cfg.num_codes)
    return run


# --- Error 4: the component network and the prior's input disagree on the width ------------------
def _error4(cfg: AimeConfig, B: int, T: int, s: _Algebra) -> _Run:
    hid, ctx, K, D = cfg.hidden_dim, cfg.context_dim, cfg.max_components, cfg.latent_dim
    h_t, c_t = torch.randn(B, hid), torch.randn(B, ctx)
    component_nn = nn.Linear(hid + ctx, 2 * K * D)
    run = _Run(wrong_code=(
        f"component_nn = nn.Linear({hid + ctx}, {2 * K * D})  # hidden_dim + context_dim -> 2*K*D\n"
        f"prior_input = h_t  # [B, hidden_dim] = {[B, hid]}\n"
        "component_params = component_nn(prior_input)"))
    run.raw_error_type, run.raw_error = _raises(lambda: component_nn(h_t))
    run.reproduced = bool(run.raw_error)
    narrow = nn.Linear(hid, 2 * K * D)
    _variant(run, "the document's orientation: nn.Linear(hidden_dim, 2*K*D) fed torch.cat([h_t, c_t], -1)",
             lambda: narrow(torch.cat([h_t, c_t], dim=-1)))
    run.cause = (f"the component network is built for {s.eq('hidden_dim + context_dim')} inputs "
                 f"(weight [in, out] = [{hid + ctx}, {2 * K * D}], {s.eq('2*K*D')}) but is fed h_t alone, "
                 f"[B, hidden_dim] = {[B, hid]}; the document's message is the same mistake the other way round "
                 f"(a network built for hidden_dim fed h_t || c_t)")
    # RIGHT: concatenate h_t and c_t
    params = component_nn(torch.cat([h_t, c_t], dim=-1))
    per_k = rearrange(params, "b (k two d) -> b k two d", k=K, two=2)
    means, log_vars = per_k[:, :, 0], per_k[:, :, 1]
    run.fix_shapes = {"prior_input": [B, hid + ctx], "component_params": list(params.shape),
                      "means": list(means.shape), "log_vars": list(log_vars.shape)}
    run.fix_verified = list(params.shape) == [B, 2 * K * D] and list(means.shape) == list(log_vars.shape) == [B, K, D]
    return run


# --- Error 5: slot attention fed the spatial map instead of [B, N, attention_dim] ----------------
class _SlotStep(nn.Module):
    """One slot-attention iteration (Locatello et al. 2020): projections, softmax over slots, mean."""

    def __init__(self, dim: int, slots: int) -> None:
        super().__init__()
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.slots = nn.Parameter(torch.randn(1, slots, dim))
        self.scale = dim**-0.5

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.to_k(x), self.to_v(x)
        q = self.to_q(self.slots.expand(x.shape[0], -1, -1))
        attn = torch.einsum("bkd,bnd->bkn", q, k).mul(self.scale).softmax(dim=1)  # over slots
        weights = attn / attn.sum(dim=-1, keepdim=True)
        return torch.einsum("bkn,bnd->bkd", weights, v), attn


def _error5(cfg: AimeConfig, B: int, T: int, s: _Algebra) -> _Run:
    dim, Ha, Ks = cfg.attention_dim, cfg.attention_resolution, cfg.num_semantic_slots
    step = _SlotStep(dim, Ks)
    feature_map = torch.randn(B, dim, Ha, Ha)
    run = _Run(wrong_code=(
        f"feature_map = feature_extractor(x_t)  # [B, attention_dim, H_att, W_att] = {[B, dim, Ha, Ha]}\n"
        "slots, attn = slot_attention(feature_map)  # to_k/to_v Linear, einsum('bkd,bnd->bkn', q, k)"))
    run.raw_error_type, run.raw_error = _raises(lambda: step(feature_map))
    run.reproduced = bool(run.raw_error)
    q = torch.randn(B, Ks, dim)
    _variant(run, "einsum('bkd,bnd->bkn', q, feature_map)", lambda: torch.einsum("bkd,bnd->bkn", q, feature_map))
    _variant(run, "nn.LayerNorm(attention_dim)(feature_map) (slot attention normalises its inputs first)",
             lambda: nn.LayerNorm(dim)(feature_map))
    run.cause = (f"slot attention expects {s.shape('B', 'N', 'attention_dim')} ({s.eq('H_att*W_att')} "
                 f"positions) but got the spatial map {s.shape('B', 'attention_dim', 'H_att', 'W_att')}: "
                 f"its Linear layers act on the last axis (W_att = {Ha}, not attention_dim = {dim}) and its "
                 f"einsum sees 4 axes where 3 are written")
    if not run.raw_error:
        run.note = "at this config the unflattened map passed through without an exception"
    # RIGHT: flatten space, channels last
    feature_seq = rearrange(feature_map, "b c h w -> b (h w) c")
    slots, attn = step(feature_seq)
    attn_spatial = rearrange(attn, "b k (h w) -> b k h w", h=Ha)
    run.fix_shapes = {"feature_seq": list(feature_seq.shape), "slots": list(slots.shape), "attn": list(attn.shape),
                      "attn_spatial": list(attn_spatial.shape)}
    run.fix_verified = (list(feature_seq.shape) == [B, Ha * Ha, dim] and list(slots.shape) == [B, Ks, dim]
                        and list(attn.shape) == [B, Ks, Ha * Ha]
                        and bool(torch.allclose(attn.sum(dim=1), torch.ones(B, Ha * Ha), atol=1e-5)))
    return run


_RUNNERS: dict[int, Callable[[AimeConfig, int, int, _Algebra], _Run]] = {
    1: _error1, 2: _error2, 3: _error3, 4: _error4, 5: _error5,
}


def diagnose(n: int, cfg: AimeConfig, batch: int | None = None, seq_len: int | None = None,
             seed: int = 0) -> Diagnosis:
    """Reproduce documented error `n` at `cfg` (B, T from batch/seq_len or the config), then verify the fix."""
    doc: DocumentedError = documented_error(n)
    B = cfg.batch_size if batch is None else batch
    T = cfg.sequence_length if seq_len is None else seq_len
    if B < 1 or T < 1:
        raise InputError(f"batch and seq_len must be positive integers, got B={B} T={T}")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        run = _RUNNERS[n](cfg, B, T, _Algebra(cfg, B, T))
    recognised = None
    if run.raw_error:
        matches = explain(run.raw_error, cfg, batch=B, seq_len=T).matches
        recognised = matches[0].error if matches else None
    return Diagnosis(
        error=n, title=doc.title, document_error=doc.document_error, raw_error=run.raw_error,
        raw_error_type=run.raw_error_type, reproduced=run.reproduced, cause=run.cause, fix=doc.fix,
        fix_verified=run.fix_verified, wrong_code=run.wrong_code, right_code=doc.right_code,
        fix_shapes=run.fix_shapes, note=run.note, variants=run.variants, recognised_as=recognised,
        batch=B, seq_len=T,
    )


def diagnose_all(cfg: AimeConfig, batch: int | None = None, seq_len: int | None = None) -> list[Diagnosis]:
    return [diagnose(e.number, cfg, batch, seq_len) for e in documented_errors()]


__all__ = ["Diagnosis", "diagnose", "diagnose_all"]
