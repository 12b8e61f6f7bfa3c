"""The packages stand on floors: a module imports only from its own floor or those below,
at its top or inside a function, so no loop between packages exists, hidden or not. Ray
and MLflow each live in their adapter. Read from the source (ast), nothing imported."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lowest first. search.backends names the backends' classes as text (imported when chosen).
FLOORS = (
    ("blocks",),
    ("runs",),
    ("search.results",),
    ("search.tables",),
    ("search.samplers", "search.pruners", "search.backends"),
    ("search.spec",),
    ("search.sweep",),
    ("bench",),
    ("api",),  # the Python API: what main.py's commands run, for notebooks
    ("main",),
)
# Imports of the project inside a function, and why each file has them (none dodges a loop:
# the floors forbid one).
IN_FUNCTIONS = {
    "main.py": "each subcommand imports what it runs: `blocks` or `validate` start without Ray or a sweep",
    "api.py": "main.py loads it for every command: running or reading a sweep (MLflow, pandas) only when asked",
    "bench/trial.py": "Ray's driver module (it sets Ray's environment) only when the ray backend is measured",
}


def floor(module: str) -> int | None:
    """The floor of a project module (None: not the project's)."""
    for level, names in enumerate(FLOORS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return level
    return None


def modules():
    """(path relative to ROOT, module name) of every project source file."""
    paths = [
        ROOT / "main.py",
        ROOT / "api.py",
        *(p for folder in ("blocks", "runs", "search", "bench") for p in (ROOT / folder).rglob("*.py")),
    ]
    for path in sorted(paths):
        relative = path.relative_to(ROOT)
        yield relative, ".".join(relative.with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path):
    """(line, imported module, inside a function) of every import in the file."""
    tree = ast.parse(path.read_text())
    inside = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for sub in ast.walk(node)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found = [a.name for a in node.names]
        else:
            continue
        for module in found:
            yield node.lineno, module, id(node) in inside


SOURCES = list(modules())


def test_every_source_file_is_on_a_floor():
    assert len(SOURCES) > 80
    assert [str(path) for path, module in SOURCES if floor(module) is None] == []


@pytest.mark.parametrize(("path", "module"), SOURCES, ids=[str(p) for p, _ in SOURCES])
def test_a_module_imports_nothing_above_its_floor(path, module):
    up = [
        f"{path}:{line}: {target} (floor {floor(target)} above {floor(module)})"
        for line, target, _ in imports(ROOT / path)
        if floor(target) is not None and floor(target) > floor(module)
    ]
    assert up == []


def test_imports_inside_functions_are_the_ones_accounted_for():
    found = {
        str(path)
        for path, _ in SOURCES
        for _, target, inside in imports(ROOT / path)
        if inside and floor(target) is not None
    }
    assert found == set(IN_FUNCTIONS)


def test_ray_and_mlflow_are_imported_by_their_adapters_only():
    ray = {str(p) for p, _ in SOURCES for _, t, inside in imports(ROOT / p) if t.split(".")[0] == "ray" and not inside}
    mlflow = {str(p) for p, _ in SOURCES for _, t, _ in imports(ROOT / p) if t.split(".")[0] == "mlflow"}
    assert all(p.startswith("search/sweep/ray/") for p in ray) and ray
    assert mlflow == {"runs/tracking.py"}


def test_the_floor_check_sees_an_arrow_up(tmp_path):
    """The check can fail: a spec module importing the sweep is caught, also inside a function."""
    source = tmp_path / "load.py"
    source.write_text("def f():\n    from search.sweep.study import state_of\n")
    [(line, target, inside)] = [i for i in imports(source) if i[1] == "search.sweep.study"]
    assert (line, inside) == (2, True) and floor(target) > floor("search.spec.load")
