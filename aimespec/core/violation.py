"""A broken promise as a record: `Violation`, its `ViolationKind`. No torch: `--explain` reads these too.

The validator (`aimespec.core.validate`) makes them; findings, explanations and reports read
their fields (`dims`, `expected_shape`, `got`, `bindings`), never their message text.
"""

from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any


class ViolationKind(StrEnum):
    """What kind of promise a call broke."""

    SHAPE = "shape"  # the right number of axes, a size off
    RANK = "rank"  # another number of axes
    DTYPE = "dtype"  # another dtype family
    TYPE = "type"  # not a tensor, not a tuple or mapping of the contract's length / keys, a wrong Python type
    MISSING = "missing"  # a key or method the contract requires is absent
    VALUE = "value"  # a value invariant (a simplex, a range, finiteness)
    EXCEPTION = "exception"  # the call raised
    TIMEOUT = "timeout"  # the call did not return in time
    CONSTRUCTOR = "constructor"  # building the component raised
    BATCH = "batch"  # probe: another example's inputs changed this example's outputs
    CAUSAL = "causal"  # probe: later steps' inputs changed an earlier step's outputs
    CONFIG = "config"  # probe: the contract fails at a second config with other widths
    REPEAT = "repeat"  # probe: the same call gave other outputs (state kept between calls)


@dataclass(frozen=True, kw_only=True)
class Violation:
    """One broken promise: which tensor, what was expected (symbolic and concrete), what came.

    Frozen: the call context (`batch`, `seq_len`, `seed`, `where`) and the documented error are
    attached with `dataclasses.replace` (`at`, `explained_as`). `dims` carries the contract's axes
    as structure, so nothing downstream reads them back out of `expected` or `message`.
    """

    contract: str
    tensor: str
    kind: ViolationKind
    message: str
    expected: str = ""  # the symbolic shape as written, `[B, hidden_dim]` ("" when no tensor was expected)
    expected_shape: list[int] | None = None  # its sizes at this call, -1 where unknown
    got: list[int] | None = None
    dims: tuple[str, ...] = ()  # the contract's axes (`("B", "hidden_dim")`)
    bindings: dict[str, int] = field(default_factory=dict)
    documented_error: int | None = None
    fix: str | None = None
    where: str | None = None  # file:line in the user's code, when known
    batch: int | None = None
    seq_len: int | None = None
    seed: int | None = None
    probe: dict[str, Any] | None = None  # a behavioural probe's evidence (kind batch | causal | config | repeat)

    def __post_init__(self) -> None:  # a plain string names its kind too ("value"), checked here
        object.__setattr__(self, "kind", ViolationKind(self.kind))

    def at(self, batch: int | None, seq_len: int | None, seed: int | None, where: str | None = None) -> "Violation":
        """This violation at one call: its (B, T), seed and, where not known yet, its file:line."""
        return replace(self, batch=batch, seq_len=seq_len, seed=seed, where=self.where or where)

    def explained_as(self, error: int | None, fix: str | None) -> "Violation":
        """This violation read as documented error `error` with its fix (a fix already given stays)."""
        return replace(self, documented_error=error, fix=self.fix or fix)

    @property
    def expected_sizes(self) -> list[int | None]:
        """`expected_shape` with None where a size is unknown."""
        return [None if s == -1 else s for s in self.expected_shape or []]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind.value
        out["dims"] = list(self.dims)
        return out


def exception_violation(contract: str, kind: ViolationKind | str, exc: BaseException) -> Violation:
    """A violation for an exception (kind `exception`) or a raising constructor (`constructor`)."""
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    constructor = kind == ViolationKind.CONSTRUCTOR
    what = "the constructor raised" if constructor else "raised"
    return Violation(contract=contract, tensor="(constructor)" if constructor else "(call)", kind=ViolationKind(kind),
                     message=f"{contract}: {what} {text}")
