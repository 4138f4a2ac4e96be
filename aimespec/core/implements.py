"""`@aimespec.implements("Name")`: declare that a user's class implements a contract."""

from typing import TypeVar

from aimespec.core.contract import contract_names

C = TypeVar("C", bound=type)


def implements(name: str):
    """Mark a class as implementing the contract `name`; returns the class itself."""
    known = contract_names()
    if name not in known:
        raise ValueError(f"{name!r} is not a contract; known contracts: {', '.join(known)}")

    def deco(cls: C) -> C:
        cls.__aimespec_implements__ = name
        return cls

    return deco
