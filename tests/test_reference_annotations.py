"""Every reference component carries its contract's annotations at its signature, and they agree.

The reference model repeats the contract's jaxtyping annotations so that shapes read at the
signature; this pins the copy to the one source, `contracts/`.
"""

import inspect
import typing

import pytest

import reference_model
from aimespec import resolve
from aimespec.core.contract import all_methods
from aimespec.core.dims import parse

CHECKED = [
    (cls, name, fn.__aimespec_contract__)
    for cls in vars(reference_model).values() if inspect.isclass(cls)
    for name, fn in vars(cls).items() if hasattr(fn, "__aimespec_contract__")
]


def test_every_contract_has_a_checked_reference_implementation():
    assert {ref for _, _, ref in CHECKED} == {m.name for m in all_methods()}


@pytest.mark.parametrize(("cls", "method", "ref"), CHECKED, ids=[f"{c.__name__}.{m}" for c, m, _ in CHECKED])
def test_annotations_agree_with_the_contract(cls, method, ref):
    contract = resolve(ref)
    fn = inspect.unwrap(getattr(cls, method))
    hints = typing.get_type_hints(fn, include_extras=True)
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1:]
    assert [p.name for p in params] == [p.name for p in contract.params]
    for p, cp in zip(params, contract.params, strict=True):
        optional = p.default is not inspect.Parameter.empty and p.default is None
        assert parse(hints[p.name], p.name, optional, nested_paths=True) == cp.node, (ref, p.name)
        assert (p.default is not inspect.Parameter.empty) == cp.has_default
    # a method checked through a view returns a richer record: the view's result is the contract's
    view = getattr(getattr(cls, method), "__aimespec_view__", None)
    returned = typing.get_type_hints(view, include_extras=True)["return"] if view is not None else hints["return"]
    assert parse(returned, "return") == contract.returns, ref
