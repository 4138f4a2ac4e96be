"""Sane bounds on what users pass: time limits, seeds, counts, sizes, devices, and memory.

Every command checks its options here, so that a bad value is one sentence naming the
option (exit 2) instead of an overflow, a hang or an allocation that takes the machine down.
"""

import math
import os
import re
from typing import Any

from aimespec.core.errors import UsageError

MAX_SEED = 2**63 - 1  # torch.manual_seed takes 64 bits; numpy's SeedSequence any int
MAX_SIZE = 1 << 20  # any size or count in a config (a width of a million is already terabytes of weights)
MAX_TIMEOUT = 7 * 24 * 3600.0  # a week: longer is no time limit at all
MEMORY_SHARE = 0.75  # the most of the machine's memory one array or one worker may take

TIMEOUT = "{option} must be a finite positive number of seconds (at most {most:g}), got {value!r}"
SEED = "{option} must be an integer in [0, 2**63 - 1], got {value!r}"
COUNT = "{option} must be an integer in [{least}, {most}], got {value!r}"
MEMORY = "{option} must be a finite positive number of GiB, got {value!r}"
DEVICE = ("{option} must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
TOO_BIG = ("{what} would take {size} of memory, more than {share:.0%} of this machine's {total}: "
           "{advice}")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def timeout_seconds(value: Any, option: str = "--timeout") -> float:
    """A finite positive time limit (`inf`, 0, negative and NaN are refused: they would switch it off)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 < value <= MAX_TIMEOUT:
        raise UsageError(TIMEOUT.format(option=option, most=MAX_TIMEOUT, value=value))
    return float(value)


def seed_value(value: Any, option: str = "--seed") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise UsageError(SEED.format(option=option, value=value))
    return value


def count(value: Any, option: str, least: int = 1, most: int = MAX_SIZE) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise UsageError(COUNT.format(option=option, least=least, most=most, value=value))
    return value


def device_name(value: Any, option: str = "--device") -> str:
    """`auto`, `cpu`, `cuda`, `cuda:N`, `mps` (whether the device is present is asked later, when used)."""
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text is None or not _DEVICE.fullmatch(text):
        raise UsageError(DEVICE.format(option=option, value=value))
    return text


def memory_bytes(gib: Any, option: str = "--max-memory") -> int | None:
    """GiB (a finite positive number) as bytes; None stays None (the default cap)."""
    if gib is None:
        return None
    ok = isinstance(gib, (int, float)) and not isinstance(gib, bool) and math.isfinite(gib)
    if not ok or not 0 < gib <= 1 << 20:
        raise UsageError(MEMORY.format(option=option, value=gib))
    return int(gib * (1 << 30))


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def fits_memory(size: int, what: str, advice: str) -> None:
    """Refuse an allocation of `size` bytes larger than MEMORY_SHARE of the machine (before it is tried:
    with overcommit it would succeed and then take the machine down page by page)."""
    total = physical_memory()
    if total is not None and size > MEMORY_SHARE * total:
        raise UsageError(TOO_BIG.format(what=what, size=human_bytes(size), share=MEMORY_SHARE,
                                        total=human_bytes(total), advice=advice))


def allocation_failure(exc: BaseException) -> str | None:
    """The sentence for an out-of-memory exception (torch's allocator, numpy, Python), else None."""
    text = str(exc)
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and (
            "can't allocate memory" in text or "not enough memory" in text or "out of memory" in text.lower())):
        found = re.search(r"allocate (\d+) bytes", text)
        size = f" ({human_bytes(int(found.group(1)))})" if found else ""
        return f"ran out of memory allocating a tensor{size}"
    return None


__all__ = [
    "MAX_SEED", "MAX_SIZE", "MAX_TIMEOUT", "allocation_failure", "count", "device_name", "fits_memory",
    "human_bytes", "memory_bytes", "physical_memory", "seed_value", "timeout_seconds",
]
