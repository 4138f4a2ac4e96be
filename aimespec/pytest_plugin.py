"""pytest plugin: `pytest --aimespec` runs the session with full contract checking switched on.

- `reference_model` (and anything decorated with `@aimespec.checked`) is checked in `full`
  mode whatever `AIMESPEC_CHECK` says outside;
- the packages named with `--aimespec-packages=pkg,other` (or the ini option
  `aimespec_packages`) get jaxtyping's import hook with beartype, so that every jaxtyping
  annotation in them is checked at runtime during the session.

The closing summary lists every test that failed on a contract: a `ContractViolation`, a
jaxtyping/beartype `TypeCheckError`, or an `aimespec.hold(...)` that returned violations
(with the first violation's message).

Enable it per run (`pytest --aimespec`) or for a project (`[tool.pytest.ini_options] aimespec = true`).
"""

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

_UNSET = object()


@dataclass
class _Session:
    """What `pytest_configure` changed, for `pytest_unconfigure` to undo and the reports to show."""

    previous_mode: Any = _UNSET  # $AIMESPEC_CHECK before the session (None: unset; _UNSET: not enabled)
    hook: Any = None  # jaxtyping's import hook, when packages were named
    packages: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # named packages imported before the hook


_STATE = _Session()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aimespec", "aimespec contract checking")
    group.addoption("--aimespec", action="store_true", default=None,
                    help="Run with full aimespec contract checking (shapes, dtypes, value invariants).")
    group.addoption("--aimespec-packages", default=None, metavar="PKG[,PKG]",
                    help="Also check the jaxtyping annotations of these packages with beartype.")
    parser.addini("aimespec", type="bool", default=False, help="Enable aimespec checking for every run.")
    parser.addini("aimespec_packages", type="args", default=[], help="Packages whose annotations are checked.")


def _enabled(config: pytest.Config) -> bool:
    flag = config.getoption("aimespec")
    return bool(flag) if flag is not None else bool(config.getini("aimespec"))


def _packages(config: pytest.Config) -> list[str]:
    raw = config.getoption("aimespec_packages")
    names = raw.split(",") if raw else list(config.getini("aimespec_packages"))
    return [n.strip() for n in names if n.strip()]


def pytest_configure(config: pytest.Config) -> None:
    if not _enabled(config):
        return
    _STATE.previous_mode = os.environ.get("AIMESPEC_CHECK")
    os.environ["AIMESPEC_CHECK"] = "full"
    packages = _packages(config)
    already = [p for p in packages if p in sys.modules]
    if packages:
        from jaxtyping import install_import_hook

        _STATE.hook = install_import_hook(packages, "beartype.beartype")
    _STATE.packages = packages
    _STATE.already = already


def pytest_unconfigure(config: pytest.Config) -> None:
    if _STATE.previous_mode is _UNSET:
        return
    previous, hook = _STATE.previous_mode, _STATE.hook
    _STATE.previous_mode, _STATE.hook = _UNSET, None
    if previous is None:
        os.environ.pop("AIMESPEC_CHECK", None)
    else:
        os.environ["AIMESPEC_CHECK"] = str(previous)
    if hook is not None:
        hook.uninstall()


def pytest_report_header(config: pytest.Config) -> str | None:
    if not _enabled(config):
        return None
    packages = _STATE.packages
    line = "aimespec: full contract checking" + (f"; jaxtyping+beartype on {', '.join(packages)}" if packages else "")
    if _STATE.already:
        line += f" (already imported before the hook, not checked: {', '.join(_STATE.already)})"
    return line


HOLD_PROPERTY = "aimespec_hold"  # user_properties key: the messages of hold()'s violations in a test
CONTRACT_ERRORS = ("ContractViolation", "TypeCheckError")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    if not _enabled(item.config):
        yield
        return
    from aimespec.runtime.hold import watching_holds

    messages: list[str] = []
    with watching_holds(lambda found: messages.extend(v.message for v in found)):
        yield
    if messages:
        item.user_properties.append((HOLD_PROPERTY, messages[0]))  # travels with the report (xdist too)


def _contract_failure(report: pytest.TestReport) -> str | None:
    """The line the summary shows for a test that failed on a contract, or None."""
    held = [value for key, value in report.user_properties if key == HOLD_PROPERTY]
    if held:
        return f"{report.nodeid}: hold found {held[0]}"
    text = str(report.longrepr)
    return report.nodeid if any(name in text for name in CONTRACT_ERRORS) else None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _enabled(config):
        return
    failed = terminalreporter.stats.get("failed", [])
    hits = [line for line in map(_contract_failure, failed) if line is not None]
    if hits:
        terminalreporter.write_sep("=", f"aimespec: {len(hits)} test(s) failed on a contract")
        for line in hits:
            terminalreporter.write_line(f"  {line}")
