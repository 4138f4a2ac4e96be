"""Why a value invariant matters and what to do when it fails: one text per kind of invariant.

A value finding (`pi must sum to 1 over K, but the largest |sum - 1| is 0.69`) is read from
the problem phrase the invariant wrote and the tensor it names, so the same advice serves
`aimespec check` (from the violation) and `diagnose --explain` (from pasted text). No torch:
`--explain` must stay light.
"""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Advice:
    rule: str  # which kind of invariant: simplex-mixture, attention-normalisation, token-range, ...
    why: str
    fix: str


# --- the texts, one per kind of invariant --------------------------------------------------------
MIXTURE_WHY = ("{t} are mixture weights over the K components: the prior's density sum_k pi_k N(z; mu_k, "
               "sigma_k) is only a distribution when they are non-negative and sum to 1 over K (the KL "
               "term and the sampled component both read them as probabilities)")
MIXTURE_FIX = ("build them by stick-breaking, pi_k = v_k * prod_{j<k} (1 - v_j) with the last stick taking the "
               "rest (so the K weights sum to 1), or normalise logits with softmax(dim=-1) over the K axis, not "
               "over B")
ATTENTION_WHY = ("{t} is a spatial attention distribution: the decoder and the attention-schema loss weight "
                 "features by it, which is only meaningful when it sums to 1 over all H_att x W_att positions "
                 "of each example")
ATTENTION_FIX = ("normalise over the flattened positions: softmax(logits.flatten(1), dim=-1).view(B, H_att, "
                 "W_att); a softmax over one spatial axis (dim=-1 of [B, H_att, W_att]) sums to 1 per row, "
                 "not over the map")
SLOTS_WHY = ("{t} is slot attention's competition: every position distributes one unit of attention over "
             "the K_slots slots (Locatello et al.), so the weights sum to 1 over the slot axis (dim 1)")
SLOTS_FIX = ("take the softmax over the slots, attn = softmax(logits, dim=1) for logits [B, K_slots, N], then "
             "renormalise over positions only for the weighted mean (attn / attn.sum(-1, keepdim=True)); a "
             "softmax over N (dim=-1) is ordinary attention, not slot competition")
SIMPLEX_WHY = "{t} is a probability distribution over {over}: it must be non-negative and sum to 1 there"
SIMPLEX_FIX = "normalise with softmax (or divide by the sum) over exactly {over}, not over another axis"
TOKEN_WHY = ("{t} are VQ codebook indices: the decoder looks them up in an embedding of num_codes rows, so "
             "every entry must be an integer in [0, num_codes-1]; anything else indexes out of range or "
             "reads a code that does not exist")
TOKEN_FIX = ("take the tokens from the quantizer's argmin over the codebook (an index of the codebook it was "
             "built with, num_codes = num_codebook_perceiver) and keep them integer (.long()); never cast "
             "scores or embeddings to tokens")
POSITIVE_WHY = ("{t} parameterises a distribution that only exists for positive values (Kumaraswamy a, b "
                "and the Dirichlet-process concentration alpha > 0): log-densities and the KL terms are NaN "
                "at <= 0")
POSITIVE_FIX = ("map the network's raw output through softplus(x) + eps (or exp) before using it as {t}; a "
                "linear output or a clamp at 0 can still produce 0 or negatives")
COORDS_WHY = ("{t} is the attention's centre in normalised image coordinates, which run from -1 (left/top) "
              "to 1 (right/bottom) as in grid_sample; outside [-1, 1] it points off the image")
COORDS_FIX = ("compute it as the attention-weighted mean of a linspace(-1, 1) grid (a convex combination "
              "stays in [-1, 1]) or squash a free output with tanh")
UNIT_WHY = "{t} is a probability or an image intensity: it must lie in {interval}"
UNIT_FIX = ("squash the output with sigmoid (or clamp images to [0, 1]); a raw linear/conv output is "
            "unbounded")
STICK_WHY = ("{t} are stick-breaking fractions v_k: each one is the share of the remaining stick taken by "
             "component k, so it must lie strictly inside (0, 1) (log v and log(1 - v) appear in the prior)")
STICK_FIX = ("sample them from Kumaraswamy(a, b) with a, b > 0 and clamp to [eps, 1 - eps], or use "
             "sigmoid of a free output")
RANGE_WHY = "{t} must lie in {interval} by the contract"
RANGE_FIX = "bound the output to {interval} (sigmoid, tanh or a clamp) where it is produced"
LOSS_WHY = ("{t} is a loss term: training backpropagates it, and a NaN or Inf loss turns every gradient "
            "and then every weight into NaN")
LOSS_FIX = ("find the first non-finite term (torch.autograd.set_detect_anomaly(True)); usual causes: log of "
            "0 (add eps or use log_softmax), exp of a large log-variance (clamp it), division by a sum that "
            "can be 0")
NONNEG_WHY = ("{t} is a reconstruction or KL term, a non-negative quantity by definition: a negative value "
              "means a sign flipped or a density was used where a log-density was meant")
NONNEG_FIX = ("write the term as the positive quantity it is (KL(q || p), -log p(x|z)); if a Monte-Carlo "
              "estimate can dip below 0, clamp_min(0) the estimate, not its parts")
FINITE_WHY = "{t} holds NaN or Inf: every later computation on it is NaN too"
FINITE_FIX = ("find where it first becomes non-finite (torch.isfinite checks after each step, or "
              "torch.autograd.set_detect_anomaly(True)): a log of 0, an exp overflow or a division by 0")

_COORD_NAMES = ("coord", "centre", "center", "position")
_STICK_NAMES = ("stick",)


def advise(tensor: str, problem: str) -> Advice | None:
    """The why and fix for a value problem phrase (`must sum to 1 over K, ...`) on `tensor`."""
    t = tensor.rsplit(".", 1)[-1] or tensor
    name = t.lower()
    if "holds NaN or Inf" in problem:
        return Advice("finite", FINITE_WHY.format(t=t), FINITE_FIX)
    if m := re.search(r"must sum to 1 over ([\w x]+?)(?:,|$)", problem):
        return _simplex(t, m.group(1).strip())
    if "must be non-negative (a probability)" in problem:
        over = re.search(r"over ([\w x]+)", problem)
        return _simplex(t, over.group(1).strip() if over else "its axis")
    if "must hold indices in" in problem:
        return Advice("token-range", TOKEN_WHY.format(t=t), TOKEN_FIX)
    if "must be finite" in problem:
        return Advice("finite-loss", LOSS_WHY.format(t=t), LOSS_FIX)
    if "must be >= 0" in problem:
        return Advice("nonnegative-loss", NONNEG_WHY.format(t=t), NONNEG_FIX)
    if m := re.search(r"must lie in ([\[(][^\]\)]*[\])])", problem):
        return _interval(t, name, m.group(1))
    return None


def _simplex(t: str, over: str) -> Advice:
    axes = {a.strip() for a in over.split(" x ")}
    if axes == {"K"}:
        return Advice("mixture-simplex", MIXTURE_WHY.format(t=t), MIXTURE_FIX)
    if axes == {"H_att", "W_att"}:
        return Advice("attention-normalisation", ATTENTION_WHY.format(t=t), ATTENTION_FIX)
    if axes == {"K_slots"}:
        return Advice("slot-competition", SLOTS_WHY.format(t=t), SLOTS_FIX)
    return Advice("simplex", SIMPLEX_WHY.format(t=t, over=over), SIMPLEX_FIX.format(over=over))


def _interval(t: str, name: str, interval: str) -> Advice:
    low, _, high = interval[1:-1].partition(",")
    low, high = low.strip(), high.strip()
    if low == "0" and high == "inf" and interval.startswith("("):
        return Advice("positivity", POSITIVE_WHY.format(t=t), POSITIVE_FIX.format(t=t))
    if (low, high) == ("-1", "1") or any(k in name for k in _COORD_NAMES):
        return Advice("coordinate-range", COORDS_WHY.format(t=t), COORDS_FIX)
    if any(k in name for k in _STICK_NAMES):
        return Advice("stick-range", STICK_WHY.format(t=t), STICK_FIX)
    if (low, high) == ("0", "1"):
        return Advice("unit-range", UNIT_WHY.format(t=t, interval=interval), UNIT_FIX)
    return Advice("range", RANGE_WHY.format(t=t, interval=interval), RANGE_FIX.format(interval=interval))


# --- the behavioural probes (their findings' own causes come from the check; these read the text) ----
BATCH_WHY = ("the batch probe replaced one example's inputs and another example's outputs moved: the examples of "
             "a batch must not see each other")
BATCH_FIX = ("look for a [B*T, ...] tensor folded back in another order than it was flattened (documented error 1: "
             "rows b*T + t come back with reshape(B, T, ...)), an RNN or attention built with batch_first=False "
             "given [B, L, E], or a statistic over dim 0 (BatchNorm in training mode, a mean over the batch)")
CAUSAL_WHY = ("the causal probe changed the inputs at later steps and an earlier step's output moved: a causal "
              "model's output at step t may read steps <= t only")
CAUSAL_FIX = ("mask attention over time (is_causal=True), pad temporal convolutions on the left only, use a "
              "unidirectional RNN, and never normalise or pool over the whole time axis")
REPEAT_WHY = ("the same inputs and seed gave different outputs: the result depends on randomness outside torch's "
              "seeded generator, or on state the object keeps between calls")
REPEAT_FIX = ("draw randomness from torch's generator (seeded per call), keep per-call values local, and update "
              "running statistics only in training mode")
CONFIG_WHY = ("the contract held at the first config and broke at a second one whose widths all differ: some width "
              "is written as a number (the document's 512, 36 or 15) instead of read from the config")
CONFIG_FIX = ("read every width from the config (cfg.hidden_dim, cfg.latent_dim, cfg.max_components, ...) or from "
              "the tensor's own shape")
PROBE_MESSAGES: tuple[tuple[str, str, str, str], ...] = (  # (probe, what its message says, why, fix)
    ("batch", r"replacing example \d+ of .+? changed the outputs of examples?", BATCH_WHY, BATCH_FIX),
    ("causal", r"changing .+? at steps >= \d+ changed \S+ at steps?", CAUSAL_WHY, CAUSAL_FIX),
    ("repeat", r"(two calls with the same inputs and seed|after calls with other inputs).*? gave different outputs",
     REPEAT_WHY, REPEAT_FIX),
    ("config", r"at the varied config", CONFIG_WHY, CONFIG_FIX),
)


# --- structure, dtype and time findings --------------------------------------------------------
MAPPING_WHY = ("the contract returns the seed's mapping (dict keys {keys}): callers read the result by key "
               "(prior_params['pi']), so another structure breaks them even when every tensor is right")
MAPPING_FIX = ("return a dict with exactly those keys (a typed record that also answers them, r['pi'], is fine); "
               "return extra objects (a torch.distributions object) beside it through another method")
TUPLE_WHY = "the contract returns a tuple of {n} in the seed's order ({names}): callers unpack it by position"
TUPLE_FIX = "return the {n} values as a tuple in that order (a NamedTuple in that order is fine)"
MISSING_WHY = "the contract's mapping requires the key {key}: callers read it"
MISSING_FIX = "add {key} to the returned mapping, shaped as the contract says"
NOT_TENSOR_WHY = "the contract returns a tensor here: callers index and reshape it"
NOT_TENSOR_FIX = "return the tensor itself, not a {got} holding it"
DTYPE_WHY = "the contract fixes the dtype family of {t}: an index tensor must be integer, features floating-point"
DTYPE_FIX = ("cast where the tensor is made: token indices with .long() (argmin/argmax already give int64), "
             "features with .float()")
TIMEOUT_WHY = ("the call ran past its time limit: either a loop that never ends (or waits on something), or a "
               "call that is only slow at this size")
TIMEOUT_FIX = "rerun with the --timeout the message names; if even a small call runs out, look for the endless loop"
STRUCTURE_MESSAGES: tuple[tuple[str, str, str], ...] = (  # (rule, pattern, which texts)
    ("mapping", r"expected a mapping with keys (?P<keys>[\w, ]+), got (?P<got>\w+)", "mapping"),
    ("tuple", r"expected a tuple of (?P<n>\d+) \((?P<names>[^)]*)\), got", "tuple"),
    ("missing-key", r"(?P<key>[\w.]+) is missing from the returned mapping", "missing"),
    ("not-a-tensor", r"expected a tensor \[[^\]]*\] = \[[^\]]*\], got (?P<got>\w+)", "tensor"),
    ("dtype", r"(?P<t>[\w.]+) expected an? (?:integer|floating-point|boolean) tensor", "dtype"),
    ("timeout", r"did not return within [\d.]+ s", "timeout"),
)


def advise_structure(text: str) -> Advice | None:
    """The why and fix of one of aimespec's structure, dtype or timeout findings, from its message."""
    for rule, pattern, which in STRUCTURE_MESSAGES:
        if (m := re.search(pattern, text)) is None:
            continue
        g = m.groupdict()
        why, fix = {
            "mapping": (MAPPING_WHY.format(keys=g.get("keys")), MAPPING_FIX),
            "tuple": (TUPLE_WHY.format(n=g.get("n"), names=g.get("names")), TUPLE_FIX.format(n=g.get("n"))),
            "missing": (MISSING_WHY.format(key=g.get("key")), MISSING_FIX.format(key=g.get("key"))),
            "tensor": (NOT_TENSOR_WHY, NOT_TENSOR_FIX.format(got=g.get("got"))),
            "dtype": (DTYPE_WHY.format(t=g.get("t")), DTYPE_FIX),
            "timeout": (TIMEOUT_WHY, TIMEOUT_FIX),
        }[which]
        return Advice(rule, why, fix)
    return None


def advise_probe(text: str) -> Advice | None:
    """The why and fix of one of aimespec's probe findings, from its message."""
    for name, pattern, why, fix in PROBE_MESSAGES:
        if re.search(pattern, text):
            return Advice(f"{name}-probe", why, fix)
    return None


# aimespec's own value message: `Contract.method: tensor <problem>`
VALUE_MESSAGE = re.compile(
    r"(?P<contract>[A-Za-z_][\w]*\.[A-Za-z_]\w*): (?P<tensor>[\w.\[\]'\"]+) (?P<problem>(?:must |holds NaN)[^\n]*)")
# and a probe's: `Contract.method: replacing example 1 of ...`
# and a structure, dtype or timeout finding's
STRUCTURE_MESSAGE = re.compile(r"(?P<contract>[A-Za-z_]\w*\.[A-Za-z_]\w*): (?P<text>[^\n]*?(?:expected a mapping "
                               r"with keys|expected a tuple of|is missing from the returned mapping|expected a tensor|"
                               r"expected an? (?:integer|floating-point|boolean) tensor|did not return within)[^\n]*)")
PROBE_MESSAGE = re.compile(r"(?P<contract>[A-Za-z_]\w*\.[A-Za-z_]\w*): (?P<text>(?:replacing example|changing |"
                           r"two calls with the same|after calls with other)[^\n]*)"
                           r"|(?<=: )(?P<config>at the varied config) ")  # its shape finding is read on its own


__all__ = ["PROBE_MESSAGE", "STRUCTURE_MESSAGE", "VALUE_MESSAGE", "Advice", "advise", "advise_probe",
           "advise_structure"]
