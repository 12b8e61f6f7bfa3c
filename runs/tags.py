"""Every MLflow tag archsweep writes, named here only: the MLflow UI filters on them and
``main.py show`` / ``export`` and a resumed or warm-started sweep read them back.

- On every run: ``SWEEP_TAG`` (the sweep it belongs to) and ``TRIAL_TAG`` ("parent" on
  the sweep's parent run, the trial's number on a trial's run).
- On the sweep's parent run: what the sweep ran with (``SPEC_SHA_TAG`` .. ``STOPPED_TAG``):
  its spec's hash, the commit, backend, sampler and device, the objectives, the
  hypervolume's reference point, what a warm start took from which earlier sweep, and why
  the sweep stopped before its budget was used up.
- On a trial's run: what it was and how it ended (``ARCH_TAG`` .. ``OUTSIDE_TAG``): its
  architecture, state and reason, Pareto membership, logged model (or why not), the
  trial it duplicates, an ablation's arm and seed, the backend's attempts and retries,
  a resumed epoch, Ray's timeouts and nodes, MO-ASHA's rung, and why it lies outside an
  amended space.
- ``FLAG_TAGS``: metrics that are flags (1.0 or 0.0), also tagged "true" or "false" so
  that runs can be filtered on them.

Plain strings: importing this module imports nothing (MLflow's own tags, such as the
parent run id, are runs.tracking's).
"""

# On every run:
SWEEP_TAG = "archsweep.sweep"
TRIAL_TAG = "archsweep.trial"  # "parent", or the trial's number
# On the sweep's parent run:
SPEC_SHA_TAG = "archsweep.spec_sha"
GIT_COMMIT_TAG = "archsweep.git_commit"
BACKEND_TAG = "archsweep.backend"
SAMPLER_TAG = "archsweep.sampler"
DEVICE_TAG = "archsweep.device"
OBJECTIVES_TAG = "archsweep.objectives"  # metric:direction,...
HYPERVOLUME_REF_TAG = "archsweep.hypervolume_ref"
WARM_TAG = "archsweep.warm_start"  # what a warm-started sweep took from which earlier one
STOPPED_TAG = "archsweep.stopped"  # why it stopped short of search.trials (an exhausted space...)
# On a trial's run:
ARCH_TAG = "archsweep.arch"  # the one-line summary of its architecture
STATE_TAG = "archsweep.state"
REASON_TAG = "archsweep.reason"
PARETO_TAG = "archsweep.pareto"
MODEL_TAG = "archsweep.model"  # the id of the trial's logged MLflow model
MODEL_ERROR_TAG = "archsweep.model_error"  # why its model could not be logged
DUPLICATE_TAG = "archsweep.duplicate_of"  # the trial whose result a repeated draw reuses
CONTINUES_TAG = "archsweep.continues"  # the pruned trial a draw of the same architecture trains on
ARM_TAG = "archsweep.arm"  # an ablation's arm and seed
SEED_TAG = "archsweep.seed"
ATTEMPT_TAG = "archsweep.attempt_key"  # which backend trial owns a run (a retry continues it)
ATTEMPTS_TAG = "archsweep.attempts"
RETRY_REASON_TAG = "archsweep.retry_reason"
RESUMED_TAG = "archsweep.resumed_from_epoch"
TIMEOUT_TAG = "archsweep.timed_out"  # set by a Ray trial's watchdog (its worker may not survive it)
NODE_TAG = "archsweep.node"  # the Ray node a trial ran on
RUNG_TAG = "archsweep.rung"  # the MO-ASHA rung (epochs trained) a pruned trial stopped at
OUTSIDE_TAG = "archsweep.outside_space"  # why an earlier trial is outside an amended space
# Metrics that are flags (1.0 or 0.0) are tags too, "true" or "false", for filtering runs.
FLAG_TAGS = {"latency_unreliable": "archsweep.latency_unreliable"}
