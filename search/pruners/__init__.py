"""The pruners a spec can name (``search.pruner``): one registry of classes behind one base
(``base.Pruner``), read by the schema for the names and the refusals, and by every place
that stops trials early (the local backend, the Ray backend's Tune scheduler, a replay).

Adding a pruner is one file with a ``Pruner`` subclass and one line here. ``rungs`` holds
MO-ASHA's decisions (no I/O, no Optuna); ``mo_asha`` the pruner and its one adapter."""

from search.pruners.base import Pruner
from search.pruners.builtin import ASHA, Hyperband, Median, NoPruner
from search.pruners.mo_asha import MOASHA

PRUNERS: dict[str, type[Pruner]] = {p.name: p for p in (NoPruner, Median, ASHA, Hyperband, MOASHA)}

__all__ = ["PRUNERS", "Pruner"]
