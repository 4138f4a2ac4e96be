"""aimespec: shape-typed specifications for the AIME world model, checked at runtime.

Contracts (in `contracts/`) write each component's signature once with the dimension
symbols of `AIME_TENSOR_SHAPE_REFERENCE.md`; aimespec binds them to an `AimeConfig`,
checks calls at runtime, holds any implementation against them, and explains shape errors.
"""

from aimespec.core.config import AimeConfig
from aimespec.core.contract import Contract, contract_names, invariants, resolve
from aimespec.core.errors import AimespecError, ConfigError, ContractNotFound, ContractViolation, UsageError
from aimespec.core.implements import implements
from aimespec.core.invariants import FiniteLoss, InRange, IntRange, Invariant, Positive, Simplex
from aimespec.core.symbols import SYMBOLS, symbol_values
from aimespec.core.validate import Violation
from aimespec.core.version import __version__
from aimespec.runtime.checked import checked, checking, current_mode, observing
from aimespec.runtime.hold import CallInputs, hold, make_inputs

for _exc in (AimespecError, ConfigError, ContractNotFound, ContractViolation, UsageError):
    _exc.__module__ = "aimespec"  # tracebacks name the public path: aimespec.ContractViolation
del _exc


def check(path=None, cfg=None, **options):
    """The report `aimespec check --json` prints, for a model file (None: the reference model)."""
    from aimespec.commands.check import check as _check

    return _check(path, cfg if cfg is not None else AimeConfig(), **options)


__all__ = [
    "SYMBOLS",
    "AimeConfig",
    "AimespecError",
    "CallInputs",
    "ConfigError",
    "Contract",
    "ContractNotFound",
    "ContractViolation",
    "FiniteLoss",
    "InRange",
    "IntRange",
    "Invariant",
    "Positive",
    "Simplex",
    "UsageError",
    "Violation",
    "__version__",
    "check",
    "checked",
    "checking",
    "contract_names",
    "current_mode",
    "hold",
    "implements",
    "invariants",
    "make_inputs",
    "observing",
    "resolve",
    "symbol_values",
]
