"""Running a sweep: the Optuna study a sweep owns (``study``), the path every trial takes
from its draw to its recorded outcome (``pipeline``), what both backends share
(``base``), the store's safety checks (``preflight``), and the backends: ``local``
(trials in processes of this machine) and ``ray`` (Ray Tune, the only package that
imports ray)."""
