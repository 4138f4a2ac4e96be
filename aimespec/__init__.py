"""aimespec: shape-typed specifications for the AIME world model, checked at runtime.

Contracts (in `contracts/`) write each component's signature once with the dimension
symbols of `AIME_TENSOR_SHAPE_REFERENCE.md`; aimespec binds them to an `AimeConfig`,
checks calls at runtime, holds any implementation against them, and explains shape errors.
"""

from aimespec._checking import checked, checking, current_mode, observing
from aimespec._config import AimeConfig
from aimespec._contract import Contract, contract_names, invariants, resolve
from aimespec._errors import AimespecError, ConfigError, ContractViolation, UsageError
from aimespec._hold import CallInputs, hold, make_inputs
from aimespec._implements import implements
from aimespec._symbols import SYMBOLS, symbol_values
from aimespec._validate import Violation

__version__ = "0.1.0"

for _exc in (AimespecError, ConfigError, ContractViolation, UsageError):
    _exc.__module__ = "aimespec"  # tracebacks name the public path: aimespec.ContractViolation
del _exc


def check(path=None, cfg=None, **options):
    """The report `aimespec check --json` prints, for a model file (None: the reference model)."""
    from aimespec._check import check as _check

    return _check(path, cfg if cfg is not None else AimeConfig(), **options)


__all__ = [
    "SYMBOLS",
    "AimeConfig",
    "AimespecError",
    "CallInputs",
    "ConfigError",
    "Contract",
    "ContractViolation",
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
