"""The meta passes of `check`: the config's full-size (B, T) on the meta device, shapes and dtypes at no FLOPs.

Each component class (or model factory) is built once on the meta device and serves every
(B, T). Factory calls without `device=` (`torch.zeros(B, K)`) land on meta too, repeated
identical component calls are computed once (`MetaMemo`, in the recorder) and so is each
distinct torch operation (`OpMemo`, with grad mode off). A pass that cannot run on meta (a
constructor or a call that needs real data: `.item()`, `nonzero`, `bincount`,
`torch.distributions` validation) is never a finding: the engine re-runs that (B, T) on real
tensors. Code that needs the caller's grad mode (a gradient taken inside a forward) gets a
second try with it on; a timeout or any other failure does not.
"""

from collections.abc import Callable
from typing import Any

import torch

from aimespec.runtime.deadline import CallTimeout
from aimespec.runtime.meta_device import meta_device
from aimespec.runtime.meta_ops import OpMemo
from aimespec.runtime.record import Recorder


class NeedsRealTensors(Exception):
    """A call could not run on the meta device: re-run it on real tensors."""


def wants_grad(exc: BaseException | None) -> bool:
    """Whether a failure with grad mode off came from autograd (a gradient asked for where no graph was
    recorded): worth a second meta pass with grad on. A timeout or any other failure is not."""
    for _ in range(4):
        if exc is None or isinstance(exc, CallTimeout):
            return False
        if isinstance(exc, RuntimeError) and "grad" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class MetaPasses:
    """The meta-device objects and the operation memo of one check.

    `run(fn)` runs user code under the engine's time limit and seed; `recorder()` makes the recorder
    a pass records its inner calls with.
    """

    def __init__(self, run: Callable[[Callable[[], Any]], Any], recorder: Callable[[], Recorder]) -> None:
        self.run, self.recorder = run, recorder
        self.objects: dict[Any, Any] = {}  # key -> the object built on the meta device (None: it cannot be)
        self.ops = OpMemo()  # each distinct torch operation of every pass, computed once

    def call(self, key: Any, make: Callable[[], Any], method: str, call: Callable[[Any, Recorder], Any]) -> bool:
        """`call(obj, recorder)` on the meta object of `key` (built by `make` once); False when it cannot run there
        (`call` raises `NeedsRealTensors`, findings are added only once the whole call went through)."""
        if key not in self.objects:
            self.objects[key] = None
            for grad in (False, True):
                try:
                    with meta_device(self.ops), torch.set_grad_enabled(grad):
                        self.objects[key] = self.run(make)
                    break
                except (Exception, CallTimeout, SystemExit) as exc:
                    if grad or not wants_grad(exc):
                        break
        obj = self.objects[key]
        if obj is None or not callable(getattr(obj, method, None)):
            return False
        for grad in (False, True):
            try:
                with meta_device(self.ops), torch.set_grad_enabled(grad), self.recorder().install(obj) as recorder:
                    call(obj, recorder)
                return True
            except NeedsRealTensors as exc:
                if grad or not wants_grad(exc.__cause__):
                    break
        return False


__all__ = ["MetaPasses", "NeedsRealTensors", "wants_grad"]
