"""torch's C++ meta kernels in the worker (aimespec/runtime/meta_kernels.py): same metadata, torch untouched here."""

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from aimespec.runtime import worker
from aimespec.runtime.meta_kernels import native_meta_kernels


def _kernel_file(op: str) -> str:
    """Where the Meta kernel torch dispatches `op` to was registered."""
    line = next(x for x in torch._C._dispatch_dump_table(op).splitlines() if x.startswith("Meta:"))
    return line.split("registered at ")[1]


def battery(b: int, c: int, n: int, dtype: torch.dtype) -> list:
    """Operations on meta tensors, as a model's forward makes them: each result's (shape, strides, dtype)."""
    x = torch.empty(b, c, n, n, device="meta", dtype=dtype)
    w = torch.empty(2 * c, c, 3, 3, device="meta", dtype=dtype)
    m = torch.empty(b, n, c, device="meta", dtype=dtype)
    lin = torch.empty(3 * c, c, device="meta", dtype=dtype)
    last = x.to(memory_format=torch.channels_last)
    idx = torch.empty(b, n, device="meta", dtype=torch.int64)
    outs = [
        F.conv2d(x, w, padding=1), F.conv2d(last, w, stride=2, padding=1), F.linear(m, lin),
        torch.addmm(lin[:, 0], m[0], lin.t()),
        m @ m.transpose(1, 2), torch.bmm(m, m.transpose(1, 2)), F.group_norm(x, 1), F.layer_norm(m, (c,)),
        F.softmax(m, -1), F.log_softmax(m, 1), m.sum(-1), m.mean((0, 2)), m.amax(1), m.var(1), torch.cumsum(m, 1),
        torch.cat([m, m], 1), torch.stack([m, m], -1), torch.where(m > 0, m, 0.5 * m), m.clamp(-1, 1), F.gelu(m),
        F.silu(m), torch.tanh(m), m + 1, m * True, m.to(torch.float64) + m, F.avg_pool2d(x, 2), F.max_pool2d(x, 2),
        F.interpolate(x, scale_factor=2.0), F.pad(x, (1, 1, 2, 0)), torch.einsum("bnc,bmc->bnm", m, m),
        last.permute(0, 2, 3, 1).contiguous(), m.topk(1, dim=1).values, m.argmax(-1),
        torch.gather(m, 1, idx[..., None]),
        F.embedding(idx, lin), m.flatten(1), m.reshape(b * n, c), x.unfold(2, 2, 2),
    ]
    return [(tuple(o.shape), o.stride(), o.dtype) for o in outs]


CASES = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(2, 6), st.sampled_from([torch.float32,
                                                                                             torch.float64]))


def test_outside_the_worker_torch_is_left_as_it_is():
    before = _kernel_file("aten::addmm")
    assert not worker.in_worker() and native_meta_kernels() is False
    assert _kernel_file("aten::addmm") == before and "_meta_registrations.py" in before


@settings(max_examples=1, deadline=None)
@given(cases=st.lists(CASES, min_size=12, max_size=12))
def test_in_the_worker_cpp_meta_kernels_give_the_metadata_the_python_ones_give(cases):
    expected = [battery(*case) for case in cases]  # here: torch's Python meta kernels

    def job():
        switched = native_meta_kernels()
        where = {op: _kernel_file(op) for op in ("aten::addmm", "aten::convolution")}
        return switched, where, [battery(*case) for case in cases]

    switched, where, got = worker.isolated(job, timeout=120)
    assert switched and "RegisterMeta" in where["aten::addmm"]  # torch's own C++ kernel ...
    assert "meta_kernels.py" in where["aten::convolution"]  # ... and the Python one again where there is no other
    assert got == expected
    assert "_meta_registrations.py" in _kernel_file("aten::addmm")  # the worker's change stayed there


def test_where_torch_internals_differ_nothing_is_dropped():
    def unknown_registration():
        from torch import _meta_registrations

        _meta_registrations._meta_lib_dont_use_me_use_register_meta._op_impls.add("aten/no_such_op/Meta")
        return native_meta_kernels(), _kernel_file("aten::addmm")

    switched, where = worker.isolated(unknown_registration, timeout=120)
    assert not switched and "_meta_registrations.py" in where
