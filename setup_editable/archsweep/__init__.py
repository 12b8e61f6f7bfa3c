"""archsweep installed editable (``pip install -e .``), for development: the checkout's
own files stay the code. The checkout goes first on ``sys.path``, so its top-level
packages (blocks, runs, search, bench) and modules (main, api) import under their own
names, as ``python main.py`` has them; a regular install (``pip install .``) puts them
under ``archsweep`` instead (setup.py). ``archsweep.run`` and the rest of the API are
api.py's, imported when first used."""

import sys
from pathlib import Path

CHECKOUT = str(Path(__file__).resolve().parents[2])
if CHECKOUT not in sys.path:
    sys.path.insert(0, CHECKOUT)

# api.__all__ (tests/test_install.py checks that they agree)
_API = frozenset(
    {
        "SPACES",
        "SpecError",
        "SpecReport",
        "StoreFailed",
        "Sweep",
        "SweepInterrupted",
        "SweepRefused",
        "execute",
        "load",
        "open_sweep",
        "run",
        "spec_path",
        "validate",
    }
)


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'archsweep' has no attribute {name!r}")
    import api

    return getattr(api, name)


def __dir__():
    return sorted({*globals(), *_API})
