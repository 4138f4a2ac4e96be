"""aimespec: shape-typed specifications for the AIME world model, checked at runtime.

Contracts (in `contracts/`) write each component's signature once with the dimension
symbols of `AIME_TENSOR_SHAPE_REFERENCE.md`; aimespec binds them to an `AimeConfig`,
checks calls at runtime, holds any implementation against them, and explains shape errors.
"""

from typing import TYPE_CHECKING

from aimespec.core.config import AimeConfig
from aimespec.core.errors import (
    AimespecError,
    ConfigError,
    ContractError,
    ContractNotFound,
    ContractViolation,
    InputError,
    UsageError,
)
from aimespec.core.files import OutputError, disk_reason, output_file, output_folder, replace_into
from aimespec.core.limits import allocation_failure, device_name, seed_value, timeout_seconds
from aimespec.core.paths import examples_path
from aimespec.core.symbols import SYMBOLS, Kind, Symbol, symbol_values
from aimespec.core.version import __version__
from aimespec.core.violation import Violation, ViolationKind
from aimespec.runtime.mode import checking, current_mode, observing

if TYPE_CHECKING:
    from aimespec.core.contract import Contract, contract_names, invariants, resolve
    from aimespec.core.implements import implements
    from aimespec.core.invariants import Causal, FiniteLoss, InRange, IntRange, Invariant, Positive, Simplex, Stateful
    from aimespec.core.user_symbols import symbol
    from aimespec.runtime.checked import checked
    from aimespec.runtime.hold import CallInputs, hold, make_inputs

# Names whose modules import torch: loaded at first use (PEP 562), so that the config, the
# symbol table and `aimespec diagnose --explain` start without torch.
_LAZY = {
    "aimespec.core.contract": ("Contract", "contract_names", "invariants", "resolve"),
    "aimespec.core.implements": ("implements",),
    "aimespec.core.invariants": ("Causal", "FiniteLoss", "InRange", "IntRange", "Invariant", "Positive", "Simplex",
                                 "Stateful"),
    "aimespec.runtime.checked": ("checked",),
    "aimespec.runtime.hold": ("CallInputs", "hold", "make_inputs"),
    "aimespec.core.user_symbols": ("symbol",),
}
_LAZY_HOME = {name: module for module, names in _LAZY.items() for name in names}

for _exc in (AimespecError, ConfigError, ContractError, ContractNotFound, ContractViolation, InputError, OutputError,
             UsageError):
    _exc.__module__ = "aimespec"  # tracebacks name the public path: aimespec.ContractViolation
del _exc


def __getattr__(name: str) -> object:
    home = _LAZY_HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'aimespec' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_HOME})


def check(path=None, cfg=None, **options):
    """The report `aimespec check --json` prints, for a model file (None: the reference model)."""
    from aimespec.commands.check import check as _check

    return _check(path, cfg if cfg is not None else AimeConfig(), **options)


def probe(obj_or_cls, ref, cfg=None, B=None, T=None, seed=0, **options):
    """The behavioural probes (batch, causal, config, repeat) of one contract on an object or class.

    Returns a `ProbeReport`: `.results` maps each probe to "ok" | "failed" | "skipped: <reason>",
    `.violations` lists the failures (kind = the probe's name), `.ok` is True when none failed.
    """
    from aimespec.commands.check_probes import probe as _probe

    return _probe(obj_or_cls, ref, cfg if cfg is not None else AimeConfig(), B, T, seed, **options)


__all__ = [
    "SYMBOLS",
    "AimeConfig",
    "AimespecError",
    "CallInputs",
    "Causal",
    "ConfigError",
    "Contract",
    "ContractError",
    "ContractNotFound",
    "ContractViolation",
    "FiniteLoss",
    "InRange",
    "InputError",
    "IntRange",
    "Invariant",
    "Kind",
    "OutputError",
    "Positive",
    "Simplex",
    "Stateful",
    "Symbol",
    "UsageError",
    "Violation",
    "ViolationKind",
    "__version__",
    "allocation_failure",
    "check",
    "checked",
    "checking",
    "contract_names",
    "current_mode",
    "device_name",
    "disk_reason",
    "examples_path",
    "hold",
    "implements",
    "invariants",
    "make_inputs",
    "observing",
    "output_file",
    "output_folder",
    "probe",
    "replace_into",
    "resolve",
    "seed_value",
    "symbol",
    "symbol_values",
    "timeout_seconds",
]
