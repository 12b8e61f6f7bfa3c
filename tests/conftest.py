import os

import pytest
import torch
from xdist.scheduler import LoadFileScheduling

# `make test` runs two pytest-xdist workers, each test file's tests together on one of them
# (its module fixtures are built once). These files run one after another on one worker,
# first: every file that starts Ray (two runtimes side by side would compete for the two
# cores and the fault tests' timeouts with them), and the two that read the quickstart's
# sweep (a session fixture: a second worker would train it again). xdist's own groups
# (--dist loadgroup) cannot do this under pytest 9: they rename a test's node id, which
# pytest 9 no longer lets a plugin do.
TOGETHER = {
    "tests/e2e/test_ray_local.py": "ray",
    "tests/e2e/test_ray_cluster.py": "ray",
    "tests/e2e/test_mo_asha.py": "ray",
    "tests/e2e/test_pruners.py": "ray",
    "tests/e2e/test_exposure.py": "ray",
    "tests/e2e/test_review.py": "quickstart",
    "tests/e2e/test_sweep.py": "quickstart",
}
FIRST = list(dict.fromkeys(TOGETHER.values()))


def pytest_configure(config):
    """Under xdist, one torch thread per worker and per sweep it starts: two workers on two
    cores, each with two threads, would wait on each other's threads."""
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_Scheduling())
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _file(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


class _Together(LoadFileScheduling):
    def _split_scope(self, nodeid: str) -> str:
        file = nodeid.split("::")[0]
        return TOGETHER.get(file, file)


class _Scheduling:
    """xdist's hook, registered only when xdist is loaded (``-p no:xdist`` runs serially)."""

    @staticmethod
    def pytest_xdist_make_scheduler(config, log):
        if config.getoption("dist") == "loadfile":
            config.option.loadscopereorder = False  # the order is the collection's: TOGETHER's first
            return _Together(config, log)
        return None


def pytest_collection_modifyitems(config, items):
    """Every test that starts Ray or reads the quickstart's sweep is in a TOGETHER file (a
    new one that is not would run beside another worker's); under xdist they come first."""
    for item in items:
        needs = "ray" if item.get_closest_marker("ray") else None
        if {"quickstart", "quickstart_ui"} & set(getattr(item, "fixturenames", ())):
            needs = "quickstart"
        if needs and TOGETHER.get(_file(item)) != needs:
            raise pytest.UsageError(f"{item.nodeid}: its file belongs in tests/conftest.py's TOGETHER as {needs!r}")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        rank = {group: i for i, group in enumerate(FIRST)}
        items.sort(key=lambda item: rank.get(TOGETHER.get(_file(item)), len(rank)))
