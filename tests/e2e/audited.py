"""Runs a script with a Python audit hook that appends every name lookup and socket
connection of its process (and of the processes it forks) to a log file:

    python tests/e2e/audited.py LOG SCRIPT [ARGS...]

It sees what a process tries, even a lookup that fails for want of a network."""

import runpy
import sys
from pathlib import Path


def _record(log: str):
    def hook(event: str, args: tuple) -> None:
        if event == "socket.getaddrinfo":
            target = args[0]
        elif event == "socket.connect":
            target = args[1]
        else:
            return
        with open(log, "a") as f:
            f.write(f"{event}\t{target!r}\n")

    return hook


if __name__ == "__main__":
    log, script, *rest = sys.argv[1:]
    sys.addaudithook(_record(log))
    sys.argv = [script, *rest]
    sys.path[0] = str(Path(script).resolve().parent)
    runpy.run_path(script, run_name="__main__")
