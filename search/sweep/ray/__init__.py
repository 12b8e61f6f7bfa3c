"""The Ray Tune backend, the only package that imports ray; its modules are split by where
their code runs:

- ``worker``: one trial inside a Ray worker (``trainable``): it logs its own MLflow child
  run on a tracking server every node reaches and reports every epoch with a checkpoint
  (so a retried trial resumes);
- ``searcher``: in the driver, Ray's ``OptunaSearch`` over the same define-by-run space
  and trial pipeline as the local backend (``ArchSearch``);
- ``driver``: the sweep (``RaySweep``): the runtime, Tune, the bookkeeping callback and,
  at the end, the searcher's study copied into the sweep's Optuna journal, so the front,
  the ablation report and ``ablation.base`` read one format;
- ``cluster``: ``main.py cluster up|down|status``, a cluster on this machine.

Security defaults (Ray's ports listen on every interface and run code for any client):
token authentication on (``RAY_AUTH_MODE=token``) unless the caller set the variable, the
private runtime and ``cluster up`` on loopback node addresses, the dashboard off unless
asked and then on 127.0.0.1. Set here, before any module of the package imports ray.
"""

import os

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no traffic leaves the machine
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # refused trials report no epochs
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: Tune prints nothing; the live view does
