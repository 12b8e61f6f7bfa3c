"""The backends a spec can name (``backend.kind``) and the class that runs each, a
``search.sweep.base.Sweep``. Named by module and class, and imported only when chosen:
the ray backend's import is seconds of Ray that a local sweep never pays. The schema
reads the names from here; ``main`` and ``bench`` choose the class through ``backend_for``.

Adding a backend is a ``Sweep`` subclass in a file of its own and one line here."""

from __future__ import annotations

import importlib

BACKENDS: dict[str, str] = {
    "local": "search.sweep.local:LocalSweep",  # trials in processes of this machine
    "ray": "search.sweep.ray.driver:RaySweep",  # Ray Tune, on this machine or a cluster
}
# "" in the checkout, "archsweep." where installed (setup.py maps the packages into archsweep).
_PACKAGE = __name__.removesuffix("search.backends")


def backend_for(kind: str) -> type:
    """The ``Sweep`` class of backend ``kind``."""
    module, _, name = BACKENDS[kind].partition(":")
    return getattr(importlib.import_module(_PACKAGE + module), name)
