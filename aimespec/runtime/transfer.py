"""What the worker process sends back: a pickle the parent can read although it never imported the model.

Reports hold plain data, with one exception: the config may be an instance of a class the
model file defines (an `AimeConfig` subclass with fields of its own). The parent must not
import that file (it runs user code), so such a dataclass instance travels as its values and
the chain of its class: the parent rebuilds a dataclass of the same name and fields on the
nearest base it can import (`AimeConfig`), and fills it without running any user code.
"""

import dataclasses
import functools
import importlib
import io
import pickle
from typing import Any

from aimespec.core.paths import USER_MODULE_PREFIX as _USER_PREFIX  # the names model files are imported under


def _foreign(cls: type) -> bool:
    """Whether the parent cannot import `cls` by name (it lives in a model file)."""
    module = getattr(cls, "__module__", "") or ""
    return module.startswith(_USER_PREFIX)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        if not dataclasses.is_dataclass(obj) or isinstance(obj, type) or not _foreign(cls):
            return NotImplemented
        base = next(b for b in cls.__mro__ if not _foreign(b))
        own = [f.name for f in dataclasses.fields(obj) if base is object or f.name not in _field_names(base)]
        values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        frozen = bool(getattr(cls, "__dataclass_params__", None) and cls.__dataclass_params__.frozen)  # type: ignore[attr-defined]
        return _rebuild, (cls.__qualname__, base.__module__, base.__qualname__, tuple(own), frozen, values)


def dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else frozenset()


@functools.cache
def _stand_in(name: str, module: str, qualname: str, own: tuple[str, ...], frozen: bool) -> type:
    base: Any = importlib.import_module(module)
    for part in qualname.split("."):
        base = getattr(base, part)
    bases = (base,) if base is not object else ()
    fields = [(f, Any, dataclasses.field(default=None)) for f in own]
    return dataclasses.make_dataclass(name.rsplit(".", 1)[-1], fields, bases=bases, frozen=frozen,
                                      namespace={"__module__": module})


def _rebuild(name: str, module: str, qualname: str, own: tuple[str, ...], frozen: bool,
             values: dict[str, Any]) -> Any:
    """The parent's copy of a model file's dataclass instance: same class name, fields and values."""
    obj = object.__new__(_stand_in(name, module, qualname, own, frozen))
    for key, value in values.items():
        object.__setattr__(obj, key, value)  # no __init__ / __post_init__: the values were checked there
    return obj


__all__ = ["dumps"]
