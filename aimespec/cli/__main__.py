"""`python -m aimespec.cli`."""

from aimespec.cli import main

main()
