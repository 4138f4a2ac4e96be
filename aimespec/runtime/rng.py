"""Randomness the probes can compare: draw k of a call comes from its own seed.

The behavioural probes compare two calls that differ in one example's (or some steps')
inputs. Seeding torch's RNG identically before each is not enough when the amount of
randomness a draw consumes depends on the values (a Gamma or Poisson sampler rejects and
retries per element): example j's new values would shift the stream for every later draw
and every later example, a false alarm. Inside `SeededDraws`, draw number k of the call
(`torch.randn`, `x.normal_()`, dropout, `torch.distributions` samplers, ...) runs on a
generator seeded from (seed, k), with or without the caller's own `generator=`; samplers
whose consumption depends on the values draw element by element, each from its own seed.
"""

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

# (owner, attribute) of every random draw the probes key by its order in the call; patched on the
# owner for the call's duration only (a TorchFunctionMode would tax every op of the model instead)
_TORCH = ("randn", "rand", "randint", "randperm", "randn_like", "rand_like", "randint_like", "normal", "bernoulli",
          "multinomial", "dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "rrelu")
_TENSOR = ("normal_", "uniform_", "bernoulli_", "bernoulli", "exponential_", "geometric_", "cauchy_", "log_normal_",
           "random_", "multinomial")
_FUNCTIONAL = ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "rrelu")
# samplers whose consumption of random numbers depends on the values (rejection, counting)
_PER_ELEMENT = ("_standard_gamma", "poisson", "binomial", "_sample_dirichlet")
MAX_PER_ELEMENT = 50_000  # beyond this many elements a value-dependent sampler runs as one draw

Owner = type | ModuleType


def _targets() -> list[tuple[Owner, str, bool]]:
    found: list[tuple[Owner, str, bool]] = []
    for owner, names, per in ((torch, _TORCH, False), (torch.Tensor, _TENSOR, False), (F, _FUNCTIONAL, False),
                              (torch, _PER_ELEMENT, True)):
        found += [(owner, n, per) for n in names if hasattr(owner, n)]
    return found


def _seed_of(seed: int, k: int, i: int = 0) -> int:
    return (seed * 1_000_003 + k * 7_919 + i * 104_729) % (2**62)


class SeededDraws:
    """`with SeededDraws(seed): model(x)`: every random draw keyed by its order in the call."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.count = 0
        self._saved: list[tuple[Owner, str, bool, Any]] = []

    def __enter__(self) -> "SeededDraws":
        for owner, name, per in _targets():
            own = name in vars(owner)
            original = getattr(owner, name)
            self._saved.append((owner, name, own, vars(owner).get(name)))
            setattr(owner, name, self._wrap(original, per))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, own, previous in reversed(self._saved):
            if own:
                setattr(owner, name, previous)
            else:
                delattr(owner, name)
        self._saved.clear()

    def _wrap(self, fn: Callable[..., Any], per_element: bool) -> Callable[..., Any]:
        @functools.wraps(fn)
        def seeded(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            if per_element:
                return _per_element(fn, args, kwargs, self.seed, self.count)
            s = _seed_of(self.seed, self.count)
            given = kwargs.get("generator")
            if isinstance(given, torch.Generator):
                kwargs["generator"] = torch.Generator(device=given.device).manual_seed(s)
            else:
                _seed_all(s)
            return fn(*args, **kwargs)

        return seeded
def _seed_all(s: int) -> None:
    torch.default_generator.manual_seed(s)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(s)


def _per_element(func: Callable[..., Any], args: tuple, kwargs: dict, seed: int, k: int) -> Any:
    """func on each element (each row for Dirichlet) alone, every one from its own seed."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not tensors or kwargs.get("generator") is not None:
        _seed_all(_seed_of(seed, k))
        return func(*args, **kwargs)
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    rows = func is getattr(torch, "_sample_dirichlet", None)
    lead = shape[:-1] if rows and shape else shape
    n = 1
    for s in lead:
        n *= s
    if n > MAX_PER_ELEMENT:
        _seed_all(_seed_of(seed, k))
        return func(*args, **kwargs)
    width = shape[-1] if rows and shape else 1
    flat = [a.expand(shape).reshape(n, width) if isinstance(a, torch.Tensor) else a for a in args]
    out = []
    for i in range(n):
        _seed_all(_seed_of(seed, k, i + 1))
        out.append(func(*[a[i] if isinstance(a, torch.Tensor) else a for a in flat], **kwargs))
    if not out:
        return func(*args, **kwargs)
    return torch.stack(out).reshape(shape)
