"""How a path is shown to the user: one rule for every message, table and annotation; and the module
names model files are imported under."""

import functools
import os
from pathlib import Path

USER_MODULE_PREFIX = "aimespec_user_"  # the module names `check`/`trace`/`spec` import model files under


def display_path(path: str | os.PathLike[str]) -> str:
    """A path relative to the working directory when it lies below it, else absolute."""
    return _display(os.fspath(path), os.getcwd())


@functools.lru_cache(maxsize=512)
def _display(path: str, cwd: str) -> str:
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path(cwd).resolve()))
    except ValueError:
        return str(p)


def examples_path() -> Path:
    """The README's example files: `aimespec/examples` in an installed wheel, `examples/` in a checkout."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "examples"
    return installed if installed.is_dir() else package.parent / "examples"
