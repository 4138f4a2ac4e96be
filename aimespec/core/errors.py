"""One small exception hierarchy. Messages are the product: their wording is pinned in tests."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aimespec.core.violation import Violation


class AimespecError(Exception):
    """Base of every error aimespec raises on purpose."""


class UsageError(AimespecError):
    """Bad input, judged where it is read (a missing file, no component found, a bad value): exit code 2.

    Everything the CLI reports as the user's mistake is one of these; any other exception
    escaping a command is a bug of aimespec's own (exit code 3, traceback shown).
    """


class ConfigError(UsageError, ValueError):
    """An invalid config value or key; the message names the field (a ValueError, as SPEC says)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole: a worker process sends it back
        return type(self), (self.field, self.problem)


class ContractError(UsageError, TypeError):
    """A contract (or a symbol) that cannot be defined as written: raised when its class is defined.

    An unknown symbol in an annotation (a typo), an invariant naming no tensor of its method,
    or a contract name that is already taken. `symbol` is the unknown name when there is one
    (the model-file loader reports the line that writes it).
    """

    symbol: str | None = None


class UnknownConfigKey(ConfigError, TypeError):
    """A keyword that is not a config field (a TypeError too, as Python's own would be)."""


class ContractNotFound(UsageError, LookupError):
    """A contract name that no contract carries."""


class InputError(UsageError, ValueError):
    """A bad value for a parameter of the library (a checking mode, an error number, a size)."""


class ContractViolation(AimespecError, TypeError):
    """A call broke its contract. Carries every violation found, not only the first."""

    def __init__(self, violations: "list[Violation]") -> None:
        self.violations = list(violations)
        lines = [v.message for v in self.violations]
        head = lines[0] if len(lines) == 1 else f"{len(lines)} contract violations:\n  " + "\n  ".join(lines)
        super().__init__(head)

    def __reduce__(self) -> tuple[Any, ...]:  # its violations, not its text, travel back from a worker
        return type(self), (self.violations,)


# The line a bug of ours ends with (exit code 3), after its traceback; {error} is `Type: message`.
REPORT_BUG = ("aimespec itself failed ({error}): this is a bug in aimespec, not in your input or model; "
              "please report it with the traceback above and the command you ran")
