"""The name of every file hssl writes, in one place.

A run folder (``hssl pretrain --out DIR``) holds the checkpoint, the training state for
``--resume``, the resolved recipe, one metrics line per epoch and, when ``train.log`` asks
for it, TensorBoard's event files; ``hssl ablate`` adds the probe report, timing, failure
and log of each run, and writes its results beside the ``runs`` folder of the study.
"""

from __future__ import annotations

# ---------------------------------------------------------------- a run folder (pretrain)

CHECKPOINT_NAME = "checkpoint.safetensors"
TRAIN_STATE_NAME = "train_state.safetensors"
METRICS_NAME = "metrics.jsonl"
RECIPE_NAME = "recipe.yaml"
# The advisory lock that keeps a second writer out of a running run's folder (run_lock.py).
LOCK_NAME = ".hssl.lock"
# TensorBoard names its event files itself; they start with this (train.log: tensorboard).
TENSORBOARD_EVENTS_PREFIX = "events.out.tfevents"

# ---------------------------------------------------------------- a run folder (ablate)

PROBE_NAME = "probe.json"
FAILURE_NAME = "failure.json"
TIMING_NAME = "timing.json"
LOG_NAME = "log.txt"

# ---------------------------------------------------------------- a study folder (ablate)

RUNS_FOLDER = "runs"
RESULTS_NAME = "results.csv"
SUMMARY_NAME = "summary.md"
PLOT_NAME = "summary.png"
STUDY_NAME = "ablation.json"
