"""The likely cause, the fix and the line to look at, for a failed behavioural probe.

Read from the failing pattern (a wrong-order fold leaves a signature of its own) and from
the object's modules (an `nn.MultiheadAttention` or RNN left at `batch_first=False`, a
bidirectional RNN), never from the model's names.
"""

import inspect
import re
from typing import Any

from torch import nn

from aimespec.core.paths import display_path

FOLD_CAUSE = ("a [B*T, ...] tensor folded back in the wrong order (documented error 1): rows laid out "
              "b-major (b*T + t) read back as (T, B, ...), or the reverse, so an example's steps hold other "
              "examples' frames")
FOLD_FIX = ("fold back in the order you flattened: rows b*T + t come back with x.reshape(B, T, ...) "
            "(einops: rearrange(x, '(b t) ... -> b t ...', b=B)); view(T, B, ...).transpose(0, 1) only undoes "
            "a T-major flatten")
BATCH_FIRST_CAUSE = ("{name} is {cls}(batch_first=False): it reads its [B, L, E] input as [L, B, E], so "
                     "every position {verb} across the batch")
BATCH_FIRST_FIX = ("construct {name} with batch_first=True (or transpose to [L, B, E] before it and back "
                   "after)")
MIXING_CAUSE = ("an operation mixes the batch axis: a statistic over dim 0 (mean, std, norm, softmax, "
                "F.batch_norm(training=True)), or an attention or RNN that takes the batch axis for its "
                "sequence axis (batch_first=False)")
MIXING_FIX = ("compute every statistic per example (over feature, space or time axes, never dim 0), and "
              "keep the batch axis out of attention and recurrence")
CAUSAL_CAUSE = ("the output at step t reads later steps: a temporal attention without a causal mask, a "
                "centred (not left-padded) convolution or pooling over time, or a bidirectional RNN")
FOLD_CAUSAL_CAUSE = ("the wrong-order fold the batch probe found (documented error 1) also hands frames of "
                     "later steps to earlier ones")
BIDIRECTIONAL_CAUSE = "{name} is a bidirectional {cls}: its output at step t reads every later step"
CAUSAL_FIX = ("mask attention over time (F.scaled_dot_product_attention(q, k, v, is_causal=True), or "
              "attn_mask=torch.ones(T, T, dtype=torch.bool).triu(1) for nn.MultiheadAttention); pad temporal "
              "convolutions on the left only; use a unidirectional RNN")
REPEAT_SAME_CAUSE = ("the result depends on more than the inputs and the seed: randomness from a generator "
                     "the probe does not control (numpy, random), or state the call reads and writes")
REPEAT_STATE_CAUSE = ("state kept on the object between calls: a cache, a running statistic or a counter "
                      "updated in forward, or a buffer sized by the last call")
REPEAT_FIX = ("keep per-call values local to the call; update running statistics only in training mode "
              "(if self.training: ...); a recurrent state belongs in the arguments and results")


def batch_cause(obj: Any, fold: bool) -> tuple[str, str, str | None]:
    """(likely cause, fix, file:line or None) of a failed batch probe."""
    if fold:
        return FOLD_CAUSE, FOLD_FIX, None
    for name, module in _named(obj):
        if isinstance(module, nn.MultiheadAttention) and not module.batch_first:
            return (BATCH_FIRST_CAUSE.format(name=name, cls="nn.MultiheadAttention", verb="attends"),
                    BATCH_FIRST_FIX.format(name=name), construction_line(obj, name))
        if isinstance(module, nn.RNNBase) and not module.batch_first:
            cls = f"nn.{type(module).__name__}" if type(module).__module__.startswith("torch") else type(
                module).__name__
            return (BATCH_FIRST_CAUSE.format(name=name, cls=cls, verb="recurs"),
                    BATCH_FIRST_FIX.format(name=name), construction_line(obj, name))
    return MIXING_CAUSE, MIXING_FIX, None


def causal_cause(obj: Any, *, fold: bool = False) -> tuple[str, str, str | None]:
    """(likely cause, fix, file:line or None) of a failed causal probe (`fold`: the batch probe found one)."""
    if fold:
        return FOLD_CAUSAL_CAUSE, FOLD_FIX, None
    for name, module in _named(obj):
        if isinstance(module, nn.RNNBase) and module.bidirectional:
            return (BIDIRECTIONAL_CAUSE.format(name=name, cls=type(module).__name__), CAUSAL_FIX,
                    construction_line(obj, name))
    return CAUSAL_CAUSE, CAUSAL_FIX, None


def repeat_state_cause(changed: list[str]) -> str:
    if not changed:
        return REPEAT_STATE_CAUSE
    shown = ", ".join(changed[:4]) + (", ..." if len(changed) > 4 else "")
    return f"{REPEAT_STATE_CAUSE}; the calls wrote into {shown}"


def _named(obj: Any) -> list[tuple[str, nn.Module]]:
    if not isinstance(obj, nn.Module):
        return []
    return [(name or type(obj).__name__, m) for name, m in obj.named_modules()]


def construction_line(root: Any, name: str) -> str | None:
    """file:line of `self.<attr> = ...` in the class of the module that owns `name` ("slots.attn")."""
    if not isinstance(root, nn.Module) or not name:
        return None
    parent_path, _, attr = name.rpartition(".")
    try:
        parent = root.get_submodule(parent_path) if parent_path else root
    except AttributeError:
        return None
    pattern = re.compile(rf"\bself\.{re.escape(attr)}\s*(:[^=]*)?=")
    for cls in type(parent).__mro__:
        if cls.__module__.startswith("torch"):
            break
        try:
            lines, start = inspect.getsourcelines(cls)
            filename = inspect.getsourcefile(cls)
        except (OSError, TypeError):
            continue
        for i, text in enumerate(lines):
            if pattern.search(text) and filename:
                return f"{display_path(filename)}:{start + i}"
    return None
