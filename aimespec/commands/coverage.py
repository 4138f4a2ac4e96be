"""What `check` did not check: the submodules of a built model that implement no contract.

Nothing is skipped silently: `context_net (ContextNet)` and `dynamics (LSTMCell)` are
listed on the model's result, and a class that reads like a contract (by its name or its
signature) gets a hint saying which one and how to declare it.
"""

from typing import Any

import torch

from aimespec.core.config import AimeConfig
from aimespec.core.contract import methods_of
from aimespec.core.symbols import declared_by
from aimespec.core.user_symbols import check_fields
from aimespec.runtime.discover import ModelSource, contract_of
from aimespec.runtime.suggest import Suggestion, suggestions

NOT_CHECKED = "not checked: {modules}"
NOT_CHECKED_IN = "not checked in {model}: {modules}"


def unchecked_modules(model: Any) -> list[tuple[str, type]]:
    """(path, class) of every highest submodule whose subtree implements no contract.

    A submodule that implements a contract covers its subtree; a container holding one
    (a ModuleList of priors) is looked into, and its other children are listed.
    """
    found: list[tuple[str, type]] = []
    if isinstance(model, torch.nn.Module):
        _visit(model, "", found)
    return found


def _visit(module: torch.nn.Module, prefix: str, found: list[tuple[str, type]]) -> None:
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if contract_of(type(child)) is not None:
            continue
        if any(contract_of(type(m)) is not None for m in child.modules()):
            _visit(child, path, found)
        else:
            found.append((path, type(child)))


def unchecked_labels(model: Any) -> list[str]:
    return [f"{path} ({cls.__name__})" for path, cls in unchecked_modules(model)]


def file_suggestions(source: ModelSource, models: list[Any]) -> list[Suggestion]:
    """Hints for the classes of a user's file that implement nothing, and for unchecked submodules."""
    if source.is_reference:
        return []
    built = {type(model) for model in models}  # build_model's model is checked as the whole model
    classes = [c for c in source.classes if contract_of(c) is None and c not in built]
    classes += [cls for model in models for _path, cls in unchecked_modules(model)]
    return suggestions(classes)


def check_symbol_fields(source: ModelSource, cfg: AimeConfig) -> None:
    """Every symbol the file declares must read fields its config has (else one sentence, exit 2)."""
    declared = {s.name for s in declared_by(source.module.__name__)}
    used = {n for comp in source.components for mc in methods_of(comp.contract) for n in mc.symbols()}
    check_fields(declared | used, cfg, where=f"{source.label} ")
