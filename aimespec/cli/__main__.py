"""`python -m aimespec.cli` (kept for torchrun: `torchrun ... -m aimespec.cli train ...`)."""

from aimespec.cli import console

console()
