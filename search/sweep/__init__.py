"""Running a sweep: the Optuna study a sweep owns (``study``), the path every trial takes
from its draw to its recorded outcome (``pipeline``), what ``search.trials`` counts and
when a sweep stops short of it (``budget``), what every backend shares (``base``,
the contract a backend implements), the store's safety checks (``preflight``), amended and
warm-started sweeps (``amend``, ``warm``), replays on a recorded table (``replay``) and the
recording of one (``record``), what ``validate`` reports (``validation``), and the
backends: ``local`` (trials in processes of this machine) and ``ray`` (Ray Tune; with the
pruners' Tune schedulers, the only code that imports ray). ``search.backends`` names them."""
