"""Making a new store's MLflow database, side by side in one process, alternating: built by
MLflow's migrations (an empty template cache each time, so the build also leaves the
template, as a user's first store does) and copied from the template (``runs.store``).
Every store made is then opened by MLflow and takes a run.

    PYTHONPATH=. .venv/bin/python -m bench.store              # 5 of each
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from runs import tracking


def _made(folder: Path, cache: Path) -> float:
    os.environ["XDG_CACHE_HOME"] = str(cache)
    started = time.perf_counter()
    tracking.embedded_store(folder)
    return time.perf_counter() - started


def run(stores: int, say=print) -> dict:
    before = os.environ.get("XDG_CACHE_HOME")
    tracking._mlflow()  # its import, once per process, is left out of both timings
    try:
        with tempfile.TemporaryDirectory(prefix="archsweep-bench-store-") as tmp:
            base = Path(tmp)
            _made(base / "first", base / "warm")  # leaves the template the copies read
            built, copied = [], []
            for i in range(stores):
                built.append(_made(base / f"built-{i}", base / f"cold-{i}"))
                copied.append(_made(base / f"copied-{i}", base / "warm"))
            for kind in ("built", "copied"):
                for i in range(stores):
                    folder = base / f"{kind}-{i}"
                    tracker = tracking.Tracker(tracking.embedded_uri(folder), kind, artifacts=folder / "artifacts")
                    tracker.client.create_run(tracker.experiment_id)
    finally:
        if before is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = before
    row = {"stores": stores, "built_s": statistics.median(built), "copied_s": statistics.median(copied)}
    say(
        f"new store, median of {stores}: built {row['built_s']:.3f} s ({_s(built)}), "
        f"copied {row['copied_s']:.4f} s ({_s(copied)}): {row['built_s'] / row['copied_s']:.0f}x"
    )
    return row


def _s(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=5)
    run(parser.parse_args().stores)


if __name__ == "__main__":
    main()
