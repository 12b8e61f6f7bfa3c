"""The archsweep wheel, built from the checkout's layout without installing its generic
top-level names (there are other ``blocks`` and ``search`` packages on the package index):
``blocks/``, ``runs/``, ``search/`` and ``bench/`` go under one package, ``archsweep``,
their absolute imports rewritten (``from blocks.spec import`` -> ``from
archsweep.blocks.spec import``, as pip's vendoring tool does); ``main.py`` becomes
``archsweep/cli.py`` (the ``archsweep`` command), ``api.py`` ``archsweep/api.py``, and
``spaces/`` (the specs and recorded tables) package data beside them, where code that
looks next to the top-level packages finds it.

``pip install -e .`` installs ``setup_editable/archsweep`` instead: a shim that puts
the checkout itself on ``sys.path`` (its top-level names importable as such: for
development only) and points ``archsweep.cli`` and ``archsweep.api`` at main.py and api.py.
Metadata, dependencies and the command are in pyproject.toml."""

import ast
import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PACKAGES = ("blocks", "runs", "search", "bench")
MODULES = {"main.py": "cli.py", "api.py": "api.py"}
RENAMED = {"blocks": "blocks", "runs": "runs", "search": "search", "bench": "bench", "main": "cli", "api": "api"}
_NAMES = "|".join(RENAMED)
_FROM = re.compile(rf"^(?P<indent>[ \t]*)from (?P<name>{_NAMES})(?P<rest>[. ])", re.M)
_IMPORT = re.compile(
    rf"^(?P<indent>[ \t]*)import (?P<name>{_NAMES})(?P<rest>\.[\w.]+)?(?P<alias> as \w+)?(?=[ \t]*(?:$|#))", re.M
)


def rewrite(source: str) -> str:
    """``source`` with its imports of the project's top-level names moved under archsweep."""

    def bare(m: re.Match) -> str:
        name, new = m["name"], RENAMED[m["name"]]
        if m["rest"]:  # `import blocks.mixers`: only ever for its side effects (the name is not used)
            return f"{m['indent']}import archsweep.{new}{m['rest']}"
        alias = m["alias"] or ("" if new == name else f" as {name}")
        return f"{m['indent']}from archsweep import {new}{alias}"

    source = _FROM.sub(lambda m: f"{m['indent']}from archsweep.{RENAMED[m['name']]}{m['rest']}", source)
    return _IMPORT.sub(bare, source)


def sources():
    """(file in the checkout, its path under archsweep/) of everything the wheel ships."""
    for top in (*PACKAGES, "spaces"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}:
                yield path, path.relative_to(ROOT)
    for module, target in MODULES.items():
        yield ROOT / module, Path(target)


def package_init(version: str) -> str:
    """archsweep/__init__.py: the API's names, imported when first used (the command and
    the trials' processes start without mlflow)."""
    api = ast.parse((ROOT / "api.py").read_text())
    names = next(
        ast.literal_eval(node.value)
        for node in api.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets)
    )
    return (
        '"""archsweep: declarative architecture search for vision models. The command is\n'
        "``archsweep`` (archsweep.cli); from Python, ``archsweep.run``, ``archsweep.open_sweep`` and\n"
        'the rest of archsweep.api."""\n\n'
        f"__version__ = {version!r}\n"
        f"_API = frozenset({sorted(names)!r})\n\n\n"
        "def __getattr__(name):\n"
        "    if name not in _API:\n"
        "        raise AttributeError(f\"module 'archsweep' has no attribute {name!r}\")\n"
        "    from archsweep import api\n\n"
        "    return getattr(api, name)\n\n\n"
        "def __dir__():\n"
        "    return sorted({*globals(), *_API})\n"
    )


class BuildPy(build_py):
    """Writes the archsweep package (see the module's docstring); editable: the shim."""

    def run(self) -> None:
        if self.editable_mode:
            super().run()
            return
        out = Path(self.build_lib) / "archsweep"
        if out.exists():
            shutil.rmtree(out)
        for source, target in sources():
            dest = out / target
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.suffix == ".py":
                dest.write_text(rewrite(source.read_text()))
            else:
                shutil.copyfile(source, dest)
        (out / "__init__.py").write_text(package_init(self.distribution.get_version()))


setup(
    packages=["archsweep"],
    package_dir={"archsweep": "setup_editable/archsweep"},
    cmdclass={"build_py": BuildPy},
)
