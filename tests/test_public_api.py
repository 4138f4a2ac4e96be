"""The public authoring API: what `aimespec` exports is what the README lists, and all contracts use."""

import ast
import importlib
import re
from pathlib import Path

import aimespec

ROOT = Path(__file__).resolve().parents[1]


def _section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"## {title}\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def test_the_readme_lists_exactly_the_public_names():
    listed = set(re.findall(r"`(\w+)`", _section("Public API"))) - {"aimespec", "AIMESPEC_CHECK"}
    assert listed == set(aimespec.__all__) - {"__version__"}


def _imports(folder: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found += [(str(path.relative_to(ROOT)), f"{node.module}.{a.name}") for a in node.names]
            elif isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), a.name) for a in node.names]
    return found


PUBLIC = ("aimespec", "aimespec.data", "aimespec.strategies")  # the packages users import from
# A plugin command (the reference model's `train`) is built from the CLI's shared options and terminal.
PLUGIN_COMMANDS = {"reference_model/train/command.py": ("aimespec.cli.options.", "aimespec.cli.terminal.")}


def test_contracts_and_the_reference_model_import_only_public_names():
    for folder in ("contracts", "reference_model"):
        for where, name in _imports(folder):
            if name.startswith(PLUGIN_COMMANDS.get(where, ())):
                continue
            if name.startswith("aimespec."):
                module, _, attr = name.rpartition(".")
                assert module in PUBLIC, (where, name)  # never aimespec.core..., aimespec.runtime...
                assert attr in importlib.import_module(module).__all__, (where, name)
