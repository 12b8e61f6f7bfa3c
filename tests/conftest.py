import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    """`make test` runs two xdist workers (--dist loadgroup). The tests that start Ray run
    one after another on one worker: two private Ray runtimes at once would contend for
    the 2 cores that Ray's start-up timeouts assume. The tests that read the trained
    quickstart share one worker, so that its session fixture trains it once."""
    for item in items:
        if item.get_closest_marker("ray"):
            item.add_marker(pytest.mark.xdist_group("ray"))
        elif "quickstart" in item.fixturenames or "quickstart_ui" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("quickstart"))
