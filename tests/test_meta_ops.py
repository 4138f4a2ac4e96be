"""The operation memo of the meta passes (aimespec/runtime/meta_ops.py): exact, or it does not answer."""

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from aimespec import AimeConfig, checking
from aimespec.runtime.meta_device import meta_device
from aimespec.runtime.meta_ops import OpMemo
from reference_model import build_model


def meta_of(value):
    """Shape, strides and dtype of every tensor in a (nested) result."""
    if isinstance(value, torch.Tensor):
        return (value.device.type, tuple(value.shape), value.stride(), value.dtype, value.requires_grad)
    if isinstance(value, (tuple, list)):
        return type(value), tuple(meta_of(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return {k: meta_of(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


def twice(fn, memo):
    """fn() twice under the memo (the second answered from it), and once with no memo."""
    with meta_device(memo), torch.no_grad():
        first, second = fn(), fn()
    with meta_device(), torch.no_grad():
        plain = fn()
    return first, second, plain


def test_the_reference_model_on_meta_is_the_same_with_the_memo_and_the_memo_answers():
    cfg = AimeConfig.small()
    memo = OpMemo(cheap=0)
    with meta_device(), torch.no_grad(), checking("off"):
        model = build_model(cfg)
        obs = torch.empty(cfg.batch_size, cfg.sequence_length, cfg.image_channels, cfg.input_dim, cfg.input_dim)
        actions = torch.empty(cfg.batch_size, cfg.sequence_length, cfg.action_dim)
        plain = model.forward_sequence(obs, actions)
    with meta_device(memo), torch.no_grad(), checking("off"):
        memoised = model.forward_sequence(obs, actions)
        again = model.forward_sequence(obs, actions)
    assert meta_of(memoised) == meta_of(plain) == meta_of(again)
    assert memo.hits > memo.runs / 10  # the unroll repeats its steps: many operations come from the memo


SHAPES = st.lists(st.integers(1, 5), min_size=1, max_size=4)


@settings(max_examples=25, deadline=None)
@given(shape=SHAPES, broadcast=st.integers(0, 3), scalar=st.sampled_from([2, 0.5, True]),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.int64]))
def test_elementwise_results_from_the_memo_have_the_metadata_torch_gives(shape, broadcast, scalar, dtype):
    memo = OpMemo(cheap=0)
    other = [1 if i == broadcast else s for i, s in enumerate(shape)]

    def ops():
        x = torch.empty(shape, dtype=dtype, device="meta")
        y = torch.empty(other, dtype=torch.float32, device="meta")
        return [x + y, x * scalar, torch.where(y > 0, x, y), x.clamp(0, 3), torch.relu(y), x.sum(-1),
                torch.cat([x, x], dim=-1), torch.stack([x, x])]

    first, second, plain = twice(ops, memo)
    assert meta_of(first) == meta_of(second) == meta_of(plain)
    assert memo.hits > 0


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 4), groups=st.sampled_from([1, 2, 4]), width=st.sampled_from([4, 8]),
       contiguous=st.booleans())
def test_norms_and_linear_from_the_memo_match_torch(batch, groups, width, contiguous):
    memo = OpMemo(cheap=0)
    weight, bias = torch.empty(3, width, device="meta"), torch.empty(3, device="meta")

    def ops():
        x = torch.empty(batch, width, 5, device="meta")
        if not contiguous:
            x = x.transpose(1, 2).contiguous().transpose(1, 2)
        return [F.group_norm(x, groups), F.layer_norm(x.transpose(1, 2), (width,)),
                F.linear(x.transpose(1, 2), weight, bias)]

    first, second, plain = twice(ops, memo)
    assert meta_of(first) == meta_of(second) == meta_of(plain)


def test_in_place_operations_views_and_aliases_are_never_answered_from_the_memo():
    memo = OpMemo(cheap=0)
    with meta_device(memo), torch.no_grad():
        for _ in range(2):
            x = torch.empty(4, 6)
            assert x.add_(1) is x and x.clamp_(0, 1) is x
            view = x.view(2, 12)
            assert view._is_view() and view._base is x
            alias = x.detach()
            assert alias.untyped_storage()._cdata == x.untyped_storage()._cdata
    assert memo.hits == 1  # only the fresh `torch.empty(4, 6)`; everything else ran both times


def test_with_grad_on_or_real_tensors_the_memo_steps_aside():
    memo = OpMemo(cheap=0)
    with meta_device(memo):
        w = torch.empty(3, 3, requires_grad=True)
        for _ in range(2):
            y = w * 2
            assert y.requires_grad and y.grad_fn is not None  # grad mode: the operation ran, graph and all
    with meta_device(memo), torch.no_grad():
        cpu = torch.ones(2, device="cpu")
        for _ in range(2):
            assert (cpu + 1).tolist() == [2.0, 2.0]  # a real tensor: real values, every time
    assert memo.hits == 0


def test_factory_calls_without_a_device_still_land_on_meta_under_the_memo():
    with meta_device(OpMemo(cheap=0)), torch.no_grad():
        made = [torch.zeros(2, 3), torch.randn(4), torch.arange(5), torch.full((2,), 1.0)]
    assert all(t.device.type == "meta" for t in made)


def test_the_default_dtype_is_part_of_the_key():
    memo = OpMemo(cheap=0)
    before = torch.get_default_dtype()
    with meta_device(memo), torch.no_grad():
        ints = torch.zeros(3, dtype=torch.int64)
        first = [torch.zeros(3).dtype, (ints * 0.5).dtype]
        torch.set_default_dtype(torch.float64)
        try:
            second = [torch.zeros(3).dtype, (ints * 0.5).dtype]
        finally:
            torch.set_default_dtype(before)
    assert first == [torch.float32, torch.float32] and second == [torch.float64, torch.float64]


def test_a_tensor_the_memo_cannot_describe_simply_runs():
    memo = OpMemo(cheap=0)
    with meta_device(memo), torch.no_grad():
        x = torch.empty(4, 3)
        out = torch.func.vmap(lambda row: row * 2 + 1)(x)  # functorch wrappers have no storage to key on
    assert out.shape == (4, 3) and out.device.type == "meta"


def test_an_operation_cheaper_than_its_key_runs_every_time_and_a_costly_one_is_answered(monkeypatch):
    from aimespec.runtime import meta_ops

    now = [0.0]
    monkeypatch.setattr(meta_ops.time, "perf_counter", lambda: now[0])  # each operation's cost, set below
    calls = {"quick": 0, "slow": 0}

    def quick(x):
        calls["quick"] += 1
        now[0] += 1e-6  # a C++ meta kernel
        return torch.empty_like(x)

    def slow(x):
        calls["slow"] += 1
        now[0] += 1e-3  # a Python meta kernel
        return torch.empty_like(x)

    memo = OpMemo()  # the default threshold
    x = torch.empty(3, 4, device="meta")
    with torch.no_grad():
        outs = [memo.call(f, (x,), {}) for f in (quick, slow) for _ in range(3)]
    assert calls == {"quick": 3, "slow": 1} and memo.hits == 2 and quick in memo.cheap and slow not in memo.cheap
    assert all(o.shape == (3, 4) and o.device.type == "meta" for o in outs)


def test_the_reference_model_on_meta_is_the_same_at_the_default_threshold():
    cfg = AimeConfig.small()
    with meta_device(), torch.no_grad(), checking("off"):
        model = build_model(cfg)
        obs = torch.empty(cfg.batch_size, cfg.sequence_length, cfg.image_channels, cfg.input_dim, cfg.input_dim)
        actions = torch.empty(cfg.batch_size, cfg.sequence_length, cfg.action_dim)
        plain = model.forward_sequence(obs, actions)
    memo = OpMemo()
    with meta_device(memo), torch.no_grad(), checking("off"):
        runs = [model.forward_sequence(obs, actions) for _ in range(2)]
    assert meta_of(runs[0]) == meta_of(plain) == meta_of(runs[1])
    assert memo.hits > 0 and memo.cheap  # the costly operations answered, the cheap ones run
