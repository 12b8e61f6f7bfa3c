"""The ``archsweep`` command of an editable install: the checkout's main.py."""

import sys

import archsweep  # noqa: F401  (puts the checkout on sys.path)
from main import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    sys.exit(cli())
