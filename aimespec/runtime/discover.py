"""Loading a model file (or the bundled reference package) and finding the components in it.

A class implements a contract when it is decorated with `@aimespec.implements("X")`, when
its name is a contract's name, or when it subclasses a reference component (read from the
module names along its MRO: `reference_model` is never imported for that). Only classes
*defined* in the file count on their own; `build_model(cfg)` counts as a component too.
Importing a file runs its code, exactly as `python file.py` would.
"""

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from aimespec.core.contract import contract_names
from aimespec.core.errors import UsageError
from aimespec.core.paths import display_path

REFERENCE_PACKAGE = "reference_model"
WORLD_CONTRACT = "AimeWorldModel"


@dataclass(frozen=True)
class Component:
    """A class found in the model file and the contract it implements."""

    cls: type
    contract: str  # the contract's component name, e.g. "DPGMMPrior"
    how: str  # "implements" | "name" | "subclass"

    @property
    def name(self) -> str:
        return self.cls.__name__


@dataclass
class ModelSource:
    """What `check` and `trace` work on: the loaded module(s) and what was found in them."""

    label: str  # how reports name it: "examples/user_model.py" or "reference_model"
    module: ModuleType
    files: frozenset[str]  # source files that count as the user's (for file:line)
    components: list[Component]
    build_model: Callable[..., Any] | None

    def world_components(self) -> list[Component]:
        return [c for c in self.components if c.contract == WORLD_CONTRACT]

    def part_components(self) -> list[Component]:
        return [c for c in self.components if c.contract != WORLD_CONTRACT]


def contract_order() -> dict[str, int]:
    """Contract name -> its rank in pillar order (the order of `CONTRACT_MODULES`, then definition)."""
    return {name: i for i, name in enumerate(contract_names())}  # already in pillar order


def contract_of(cls: type) -> tuple[str, str] | None:
    """(contract name, how) when `cls` implements a contract by the discovery rule, else None."""
    if not inspect.isclass(cls):
        return None
    known = contract_names()
    declared = getattr(cls, "__aimespec_implements__", None)
    if isinstance(declared, str) and declared in known:
        return declared, "implements"
    if cls.__name__ in known and not _is_contract_class(cls):
        return cls.__name__, "name"
    for base in cls.__mro__[1:]:
        module = getattr(base, "__module__", "") or ""
        in_reference = module == REFERENCE_PACKAGE or module.startswith(REFERENCE_PACKAGE + ".")
        if in_reference and base.__name__ in known:
            return base.__name__, "subclass"
    return None


def _is_contract_class(cls: type) -> bool:
    module = getattr(cls, "__module__", "") or ""
    return module == "contracts" or module.startswith("contracts.")


def load_source(path: str | os.PathLike[str] | None) -> ModelSource:
    """Import the model file at `path` (None: the bundled reference package) and discover it."""
    if path is None:
        return _load_reference()
    return _load_file(Path(path))


def _load_file(path: Path) -> ModelSource:
    shown = str(path)
    if not path.exists():
        raise UsageError(f"{shown} does not exist: give a Python model file (or no PATH for the reference model)")
    if path.is_dir():
        raise UsageError(f"{shown} is a directory: give a Python model file such as {shown.rstrip('/')}/model.py")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    name = f"aimespec_user_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{digest}"
    loader = importlib.machinery.SourceFileLoader(name, str(resolved))
    spec = importlib.util.spec_from_loader(name, loader, origin=str(resolved))
    if spec is None:  # pragma: no cover - SourceFileLoader always yields a spec
        raise UsageError(f"{shown} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(resolved)
    sys.modules[name] = module  # dataclasses, pickling and typing look the module up by name
    folder = str(resolved.parent)
    sys.path.insert(0, folder)  # sibling imports work as with `python file.py`
    try:
        loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        where = f"{shown}:{exc.lineno}" if exc.lineno else shown
        raise UsageError(f"{where}: syntax error: {exc.msg}; fix the file and run again") from exc
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        text = f"{type(exc).__name__}: {exc}".rstrip(": ")
        raise UsageError(f"importing {shown} failed with {text}") from exc
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    classes = [obj for obj in vars(module).values() if inspect.isclass(obj) and obj.__module__ == name]
    factory = module.__dict__.get("build_model")
    factory = factory if inspect.isfunction(factory) and factory.__module__ == name else None
    return _source(display_path(path), module, frozenset({str(resolved)}), classes, factory)


def _load_reference() -> ModelSource:
    try:
        package = importlib.import_module(REFERENCE_PACKAGE)
    except ImportError as exc:
        raise UsageError(f"the bundled reference model could not be imported ({exc}); give a model file") from exc
    prefix = REFERENCE_PACKAGE + "."
    modules = [m for n, m in sorted(sys.modules.items()) if n == REFERENCE_PACKAGE or n.startswith(prefix)]
    classes: list[type] = []
    for module in modules:
        if module is None:
            continue
        classes += [obj for obj in vars(module).values()
                    if inspect.isclass(obj) and obj.__module__ == module.__name__]
    root = Path(inspect.getfile(package)).resolve().parent
    files = frozenset(str(p) for p in root.rglob("*.py"))
    factory = getattr(package, "build_model", None)
    return _source(REFERENCE_PACKAGE, package, files, classes, factory if callable(factory) else None)


def _source(label: str, module: ModuleType, files: frozenset[str], classes: list[type],
            factory: Callable[..., Any] | None) -> ModelSource:
    order = contract_order()
    found: dict[type, Component] = {}
    for cls in classes:
        hit = contract_of(cls)
        if hit is not None and cls not in found:
            found[cls] = Component(cls, *hit)
    components = sorted(found.values(), key=lambda c: (order[c.contract], c.name))
    if not components and factory is None:
        raise UsageError(
            f"{label} defines no component: no class named as a contract ({', '.join(order)}), "
            "decorated with @aimespec.implements(...), or subclassing a reference component, and no build_model(cfg)"
        )
    return ModelSource(label, module, files, components, factory)
