"""`python -m aimespec`: the same command as the `aimespec` console script."""

from aimespec.cli import console

console()
