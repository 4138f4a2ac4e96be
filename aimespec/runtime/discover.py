"""Loading a model file (or the bundled reference package) and finding the components in it.

A class implements a contract when it is decorated with `@aimespec.implements("X")`, when
its name is a contract's name, or when it subclasses a reference component (read from the
module names along its MRO: `reference_model` is never imported for that). Only classes
*defined* in the file count on their own; `build_model(cfg)` counts as a component too.
Importing a file runs its code, exactly as `python file.py` would.
"""

import dataclasses
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from aimespec.core.config import AimeConfig
from aimespec.core.contract import USER_MODULE_PREFIX, contract_names, forget_contracts, is_contract_class
from aimespec.core.errors import ContractError, UsageError
from aimespec.core.paths import display_path
from aimespec.core.symbols import forget_user_symbols
from aimespec.runtime.suggest import suggestion_text

REFERENCE_PACKAGE = "reference_model"
WORLD_CONTRACT = "AimeWorldModel"
CONFIG_ATTRIBUTE = "aimespec_config"  # a module-level name that picks the file's config class
NOT_A_CONFIG = "{path}: aimespec_config must be a subclass of aimespec.AimeConfig, got {got}"
SEVERAL_CONFIGS = ("{path} defines several config classes ({names}): name the one to use with "
                   "aimespec_config = {first}")


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
    config_class: type[AimeConfig] = AimeConfig  # the file's AimeConfig subclass, if it has one
    classes: list[type] = dataclasses.field(default_factory=list)  # every class defined there

    @property
    def is_reference(self) -> bool:
        return self.module.__name__ == REFERENCE_PACKAGE

    def world_components(self) -> list[Component]:
        return [c for c in self.components if c.contract == WORLD_CONTRACT]

    def part_components(self) -> list[Component]:
        return [c for c in self.components if c.contract != WORLD_CONTRACT]


def contract_order() -> dict[str, int]:
    """Contract name -> its rank in pillar order (the order of `CONTRACT_MODULES`, then definition)."""
    return {name: i for i, name in enumerate(contract_names())}  # already in pillar order


def contract_of(cls: type) -> tuple[str, str] | None:
    """(contract name, how) when `cls` implements a contract by the discovery rule, else None."""
    if not inspect.isclass(cls) or is_contract_class(cls):
        return None  # a contract class is never an implementation, wherever it is defined
    known = contract_names()
    declared = getattr(cls, "__aimespec_implements__", None)
    if isinstance(declared, str) and declared in known:
        return declared, "implements"
    if cls.__name__ in known:
        return cls.__name__, "name"
    for base in cls.__mro__[1:]:
        module = getattr(base, "__module__", "") or ""
        in_reference = module == REFERENCE_PACKAGE or module.startswith(REFERENCE_PACKAGE + ".")
        if in_reference and base.__name__ in known:
            return base.__name__, "subclass"
    return None


def load_source(path: str | os.PathLike[str] | None, *, require_components: bool = True) -> ModelSource:
    """Import the model file at `path` (None: the bundled reference package) and discover it.

    A file with no component is a usage error, unless `require_components` is False (`spec`
    of a module that holds only contracts and symbols).
    """
    if path is None:
        return _load_reference()
    return _load_file(Path(path), require_components)


def _load_file(path: Path, require_components: bool = True) -> ModelSource:
    shown = str(path)
    if not path.exists():
        raise UsageError(f"{shown} does not exist: give a Python model file (or no PATH for the reference model)")
    if path.is_dir():
        raise UsageError(f"{shown} is a directory: give a Python model file such as {shown.rstrip('/')}/model.py")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    name = f"{USER_MODULE_PREFIX}{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{digest}"
    loader = importlib.machinery.SourceFileLoader(name, str(resolved))
    spec = importlib.util.spec_from_loader(name, loader, origin=str(resolved))
    if spec is None:  # pragma: no cover - SourceFileLoader always yields a spec
        raise UsageError(f"{shown} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(resolved)
    forget_contracts(USER_MODULE_PREFIX)  # the model file checked before this one is no longer in play
    forget_user_symbols(USER_MODULE_PREFIX)
    sys.modules[name] = module  # dataclasses, pickling and typing look the module up by name
    folder = str(resolved.parent)
    sys.path.insert(0, folder)  # sibling imports work as with `python file.py`
    try:
        loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        where = f"{shown}:{exc.lineno}" if exc.lineno else shown
        raise UsageError(f"{where}: syntax error: {exc.msg}; fix the file and run again") from exc
    except ContractError as exc:  # a contract or symbol written wrong: say where, in one sentence
        sys.modules.pop(name, None)
        forget_contracts(name)
        forget_user_symbols(name)
        where = _symbol_written(resolved, shown, exc.symbol) or _where_raised(exc, str(resolved), shown)
        raise UsageError(f"{where}: {exc}") from exc
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
    source = _source(display_path(path), module, frozenset({str(resolved)}), classes, factory, require_components)
    source.config_class = _config_class(module, classes, display_path(path))
    return source


def _symbol_written(path: Path, shown: str, symbol: str | None) -> str | None:
    """`file.py:LINE` of the first string literal in the file that names `symbol` (the annotation that
    holds the typo), or None when the file has none (the symbol came from elsewhere)."""
    if not symbol:
        return None
    word = re.compile(rf"(?<![\w.]){re.escape(symbol)}(?![\w])")
    try:
        with tokenize.open(path) as stream:
            for token in tokenize.generate_tokens(stream.readline):
                if token.type == tokenize.STRING and word.search(token.string):
                    return f"{shown}:{token.start[0]}"
    except (OSError, SyntaxError, tokenize.TokenError):
        return None
    return None


def _where_raised(exc: BaseException, filename: str, shown: str) -> str:
    """`file.py:LINE` of the deepest frame of the model file in the traceback (the class statement)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{shown}:{line}" if line else shown


def _config_class(module: ModuleType, classes: list[type], shown: str) -> type[AimeConfig]:
    """`aimespec_config = MyConfig` when the file says so, else the one AimeConfig subclass it defines."""
    named = module.__dict__.get(CONFIG_ATTRIBUTE)
    if named is not None:
        if not (inspect.isclass(named) and issubclass(named, AimeConfig)):
            raise UsageError(NOT_A_CONFIG.format(path=shown, got=f"{type(named).__name__} {named!r}"))
        return named
    found = [c for c in classes if issubclass(c, AimeConfig) and c is not AimeConfig]
    if len(found) > 1:
        names = ", ".join(c.__name__ for c in found)
        raise UsageError(SEVERAL_CONFIGS.format(path=shown, names=names, first=found[0].__name__))
    return found[0] if found else AimeConfig


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
            factory: Callable[..., Any] | None, require_components: bool = True) -> ModelSource:
    order = contract_order()
    found: dict[type, Component] = {}
    for cls in classes:
        hit = contract_of(cls)
        if hit is not None and cls not in found:
            found[cls] = Component(cls, *hit)
    components = sorted(found.values(), key=lambda c: (order[c.contract], c.name))
    if not components and factory is None and require_components:
        hint = suggestion_text([c for c in classes if not is_contract_class(c)])
        raise UsageError(
            f"{label} defines no component: no class named as a contract ({', '.join(order)}), "
            "decorated with @aimespec.implements(...), or subclassing a reference component, and no build_model(cfg)"
            + (f" ({hint})" if hint else "")
        )
    return ModelSource(label, module, files, components, factory, classes=list(classes))
