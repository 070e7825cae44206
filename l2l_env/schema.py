"""The names of the env's observation and ``info`` keys: one source for the env, the agents, the
run's recorder and the benchmarks.

Observation (see :class:`l2l_env.env.PseudoLabelEnv` for shapes and ranges): the grid maps of
:data:`MAP_KEYS`, the optional :data:`IMAGE_KEY` map, the phrase vector :data:`TEXT_KEY`, the
scalars of :data:`VECTOR_KEYS`, the optional scalar :data:`PRIOR_SCORE_KEY`, and the
analysis-only :data:`TRUTH_KEY` (``oracle_obs=True``).

``info`` of a step: :data:`STEP_INFO_KEYS` always, :data:`UPDATE_INFO_KEYS` on segmenter-update
steps, :data:`SCORED_INFO_KEYS` on steps the reward scores per choice, and on unlabeled steps with
``diagnostics=True`` the :data:`DIAGNOSTIC_KEYS`: measured against the ground truth of unlabeled
samples, for reports only. No agent and no reward may read a diagnostic key.
"""

from __future__ import annotations

MAP_KEYS: tuple[str, ...] = ("prior", "student", "teacher", "uncertainty")
"""Grid maps ``(1, G, G)`` of every observation, in their canonical channel order."""
IMAGE_KEY = "image"
"""The image pooled to the grid ``(3, G, G)`` (``include_image=True``)."""
TEXT_KEY = "text"
"""The phrase embedding ``(D,)``."""
VECTOR_KEYS: tuple[str, ...] = ("no_prior", "progress")
"""Scalar side information ``(1,)``, in canonical order."""
PRIOR_SCORE_KEY = "prior_score"
"""The prior provider's confidence in its grounding ``(1,)`` in [0, 1] (0 without a prior;
``include_prior_score=True``)."""
TRUTH_KEY = "truth"
"""Ground-truth foreground fraction per cell ``(1, G, G)``: analysis-only oracles."""

STEP_INFO_KEYS: tuple[str, ...] = (
    "sample_id", "global_step", "calibration", "scored", "coverage", "label_fg_fraction",
    "reward_components", "cell_rewards", "oracle", "updated")
"""Keys of every step's ``info``."""
UPDATE_INFO_KEYS: tuple[str, ...] = ("segmenter",)
"""Added on steps that update the segmenter (its loss, probe mIoU ...)."""
SCORED_INFO_KEYS: tuple[str, ...] = ("cell_scores",)
"""Added on steps whose label the reward scores per choice (the held-out calibration steps)."""
DIAGNOSTIC_KEYS: tuple[str, ...] = (
    "pl_precision", "pl_fg_precision", "pl_recall", "pl_selected_pixels", "pl_correct_pixels",
    "pl_iou_prior", "pl_iou_teacher", "pl_iou_label", "pl_cell_correct")
"""Measured against unlabeled ground truth (``diagnostics=True``): reported, never learned from.
``pl_iou_*``: IoU of the prior, the teacher and the constructed label with the mask;
``pl_precision``: accuracy of the labeled pixels; ``pl_cell_correct`` ``(G*G,)``: per cell, the
share of pixels the candidate label gets right."""
DIAGNOSTIC_SCALARS: tuple[str, ...] = tuple(k for k in DIAGNOSTIC_KEYS if k != "pl_cell_correct")
"""The diagnostics that are one number per step."""
