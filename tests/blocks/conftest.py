"""timm and vit-pytorch as the tests' oracles, imported over a stand-in for torchvision.

timm imports torchvision when it is imported (``torchvision.ops.misc.FrozenBatchNorm2d``,
``torchvision.transforms``, ``torchvision.datasets``), and so does vit-pytorch's package
``__init__`` (its ``dino`` module takes ``torchvision.transforms``); the only torchvision
wheels on the package index are CUDA builds that fail to import with our CPU torch
(``operator torchvision::nms does not exist``), and requirements-oracle.txt installs both
with --no-deps. timm's ViT, DeiT and Mixer and vit-pytorch's CCT, PiT, CvT and LeViT use
no torchvision code, so while an oracle is imported, and only then, placeholders stand in
for those modules: any name it takes from them exists, and raises if it is ever called.
They are removed from ``sys.modules`` afterwards, so nothing else sees a torchvision. No
runtime code imports either oracle.
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


def _import_over_stand_in(name: str, *submodules: str):
    """Import ``name`` (and its ``submodules``) with torchvision's placeholders in place."""
    if name in sys.modules and all(f"{name}.{sub}" in sys.modules for sub in submodules):
        return sys.modules[name]
    stubs = {mod: _Module(mod) for mod in _TORCHVISION if mod not in sys.modules}
    for mod, module in stubs.items():
        parent, _, child = mod.rpartition(".")
        if parent in stubs:
            setattr(stubs[parent], child, module)
    sys.modules.update(stubs)
    try:
        package = importlib.import_module(name)
        for sub in submodules:
            importlib.import_module(f"{name}.{sub}")
        return package
    finally:
        for mod in stubs:
            sys.modules.pop(mod, None)


@pytest.fixture(scope="session")
def timm():
    """The timm module (installed by make setup from requirements-oracle.txt)."""
    return _import_over_stand_in("timm")


@pytest.fixture(scope="session")
def vit_pytorch():
    """lucidrains' vit_pytorch package with its ``cct``, ``pit``, ``cvt`` and ``levit``
    modules imported (requirements-oracle.txt)."""
    return _import_over_stand_in("vit_pytorch", "cct", "pit", "cvt", "levit")
