"""timm as the tests' oracle, imported over a stand-in for torchvision.

timm imports torchvision when it is imported (``torchvision.ops.misc.FrozenBatchNorm2d``,
``torchvision.transforms``, ``torchvision.datasets``), and the only torchvision wheels on
the package index are CUDA builds that fail to import with our CPU torch
(``operator torchvision::nms does not exist``); requirements-oracle.txt installs timm
with --no-deps. timm's ViT, DeiT and Mixer use no torchvision code, so while timm is
imported, and only then, placeholders stand in for those modules: any name timm takes
from them exists, and raises if it is ever called. They are removed from ``sys.modules``
afterwards, so nothing else sees a torchvision. No runtime code imports timm.
"""

import importlib
import sys
import types

import pytest

_TORCHVISION = (
    "torchvision",
    "torchvision.ops",
    "torchvision.ops.misc",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "torchvision.datasets",
)


class _Placeholder(type):
    """A class standing for any torchvision name: attributes are placeholders too
    (``InterpolationMode.BILINEAR``); calling it fails loudly."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})

    def __call__(cls, *args, **kwargs):
        raise RuntimeError(f"torchvision's {cls.__name__} was called, but torchvision is a stand-in in these tests")


class _Module(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})


def _import_timm():
    if "timm" in sys.modules:
        return sys.modules["timm"]
    stubs = {name: _Module(name) for name in _TORCHVISION if name not in sys.modules}
    for name, module in stubs.items():
        parent, _, child = name.rpartition(".")
        if parent in stubs:
            setattr(stubs[parent], child, module)
    sys.modules.update(stubs)
    try:
        return importlib.import_module("timm")
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


@pytest.fixture(scope="session")
def timm():
    """The timm module (installed by make setup from requirements-oracle.txt)."""
    return _import_timm()
