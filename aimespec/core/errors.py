"""One small exception hierarchy. Messages are the product: their wording is pinned in tests."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aimespec.core.validate import Violation


class AimespecError(Exception):
    """Base of every error aimespec raises on purpose."""


class ConfigError(AimespecError, ValueError):
    """An invalid config value or key; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class ContractNotFound(AimespecError, LookupError):
    """A contract name that no contract carries."""


class UnknownConfigKey(ConfigError, TypeError):
    """A keyword that is not a config field (a TypeError too, as Python's own would be)."""


class UsageError(AimespecError):
    """Bad input to a command (missing file, no component found, ...): exit code 2."""


class ContractViolation(AimespecError, TypeError):
    """A call broke its contract. Carries every violation found, not only the first."""

    def __init__(self, violations: "list[Violation]") -> None:
        self.violations = list(violations)
        lines = [v.message for v in self.violations]
        head = lines[0] if len(lines) == 1 else f"{len(lines)} contract violations:\n  " + "\n  ".join(lines)
        super().__init__(head)
