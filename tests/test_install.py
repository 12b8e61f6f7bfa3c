"""archsweep installed as a user installs it: a wheel built from the checkout (setup.py
maps its top-level packages into one package, archsweep) installed into a fresh virtual
environment and used from a folder outside the checkout; and the editable install.

No network: the wheel is built without build isolation (this environment's setuptools)
and installed without dependencies; the fresh environment reads this one's installed
packages through a .pth file (``--system-site-packages`` would give the base Python's,
not this virtual environment's)."""

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import api

ROOT = Path(__file__).resolve().parents[1]
# What setup.py reads: copied, so that building leaves nothing (build/, *.egg-info) in the checkout.
SOURCES = ("blocks", "runs", "search", "bench", "spaces", "setup_editable", "main.py", "api.py", "setup.py")
SOURCES += ("pyproject.toml", "MANIFEST.in", "README.md")
PROJECT_NAMES = {"blocks", "runs", "search", "bench", "main", "api"}


def sh(*command, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    said = f"{command}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert not check or done.returncode == 0, said
    return done


def copy_sources(into: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=ignore)
        else:
            shutil.copy2(source, into / name)
    return into


def fresh_venv(path: Path) -> Path:
    """A virtual environment without pip that sees this one's installed packages (after its own)."""
    sh(sys.executable, "-m", "venv", "--without-pip", str(path), cwd=path.parent)
    [site] = [p for p in path.glob("lib/python*/site-packages")]
    here = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "suite-packages.pth").write_text("".join(f"{p}\n" for p in here))
    return path


def pip_install(venv: Path, *what: str, cwd: Path) -> None:
    flags = ("--no-deps", "--no-index", "--no-build-isolation", "--disable-pip-version-check", "-q")
    sh(sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", *flags, *what, cwd=cwd)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    (base / "src").mkdir()
    src = copy_sources(base / "src")
    flags = ("--no-deps", "--no-index", "--no-build-isolation", "--disable-pip-version-check", "-q")
    sh(sys.executable, "-m", "pip", "wheel", *flags, "-w", str(base / "dist"), ".", cwd=src)
    [built] = (base / "dist").glob("archsweep-*.whl")
    return built


def test_the_wheel_installs_one_package_whose_imports_stay_inside_it(wheel):
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
        assert top == {"archsweep"}
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "archsweep = archsweep.cli:cli" in whl.read(info).decode()
        assert {"archsweep/cli.py", "archsweep/api.py", "archsweep/spaces/quickstart.yaml"} <= set(names)
        assert "archsweep/spaces/tables/digits.jsonl.gz" in names
        escaping = []
        for name in (n for n in names if n.endswith(".py")):
            for node in ast.walk(ast.parse(whl.read(name))):
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    found = [node.module]
                elif isinstance(node, ast.Import):
                    found = [a.name for a in node.names]
                else:
                    continue
                escaping += [f"{name}:{node.lineno}: {m}" for m in found if m.split(".")[0] in PROJECT_NAMES]
        assert escaping == []
        init = whl.read("archsweep/__init__.py").decode()
    assert str(sorted(api.__all__)) in init  # the package's lazy names are the API's


@pytest.mark.slow
def test_installed_command_and_api_work_outside_the_checkout(wheel, tmp_path):
    venv = fresh_venv(tmp_path / "venv")
    pip_install(venv, str(wheel), cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    command = str(venv / "bin" / "archsweep")

    # (the command's `validate --json`: the editable install's test below)
    replay = ["-o", "search.replay=digits.jsonl.gz", "-o", "search.trials=2", "-o", "tracking.dir=store"]
    ran = sh(command, "run", "tables/digits", *replay, cwd=work)
    said = " ".join(ran.stdout.split())  # rich wraps at 80 columns
    assert "2 trials: 2 complete" in said and "open it with: archsweep ui --store store" in said
    assert (work / "store" / "mlflow.db").exists()

    script = f"""
import importlib.util, json, archsweep
names = {sorted(PROJECT_NAMES)!r}
clashing = [n for n in names if importlib.util.find_spec(n) is not None]
sweep = archsweep.open_sweep("store")
print(json.dumps({{"file": archsweep.__file__, "clashing": clashing, "trials": len(sweep.trials),
                  "hypervolume": sweep.hypervolume, "size": archsweep.validate("tables/digits").size}}))
"""
    seen = json.loads(sh(str(venv / "bin" / "python"), "-c", script, cwd=work).stdout)
    assert seen["file"].startswith(str(venv)) and seen["clashing"] == []
    assert seen["trials"] == 2 and seen["hypervolume"] > 0 and seen["size"] > 2


@pytest.mark.slow
def test_the_editable_install_runs_the_checkout(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    copy_sources(src)
    venv = fresh_venv(tmp_path / "venv")
    pip_install(venv, "-e", str(src), cwd=tmp_path)
    checked = sh(str(venv / "bin" / "archsweep"), "validate", "quickstart", "--json", "--samples", "1", cwd=tmp_path)
    assert json.loads(checked.stdout)["name"] == "quickstart"
    script = "import archsweep, api, main; print(archsweep.run is api.run, main.__file__)"
    out = sh(str(venv / "bin" / "python"), "-c", script, cwd=tmp_path).stdout.split()
    assert out == ["True", str(src / "main.py")]


def test_the_editable_shim_offers_the_apis_names():
    shim = ast.parse((ROOT / "setup_editable" / "archsweep" / "__init__.py").read_text())
    [names] = [n.value for n in ast.walk(shim) if isinstance(n, ast.Assign) and n.targets[0].id == "_API"]
    assert ast.literal_eval(names.args[0]) == set(api.__all__)
