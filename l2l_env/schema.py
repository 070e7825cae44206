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

PRIOR_KEY, STUDENT_KEY, TEACHER_KEY = "prior", "student", "teacher"
"""Grid maps ``(1, G, G)``: the MLLM prior, the student's and the EMA teacher's predictions."""
UNCERTAINTY_KEY = "uncertainty"
"""Grid map ``(1, G, G)``: the teacher's normalised entropy or the student-teacher gap."""
MAP_KEYS: tuple[str, ...] = (PRIOR_KEY, STUDENT_KEY, TEACHER_KEY, UNCERTAINTY_KEY)
"""Grid maps ``(1, G, G)`` of every observation, in their canonical channel order."""
IMAGE_KEY = "image"
"""The image pooled to the grid ``(3, G, G)`` (``include_image=True``)."""
TEXT_KEY = "text"
"""The phrase embedding ``(D,)``."""
NO_PRIOR_KEY = "no_prior"
"""``(1,)`` 1 when the MLLM gave no box (the prior map is then flat)."""
PROGRESS_KEY = "progress"
"""``(1,)`` steps since the start of the run over ``progress_horizon``."""
VECTOR_KEYS: tuple[str, ...] = (NO_PRIOR_KEY, PROGRESS_KEY)
"""Scalar side information ``(1,)``, in canonical order."""
PRIOR_SCORE_KEY = "prior_score"
"""The prior provider's confidence in its grounding ``(1,)`` in [0, 1] (0 without a prior;
``include_prior_score=True``)."""
TRUTH_KEY = "truth"
"""Ground-truth foreground fraction per cell ``(1, G, G)``: analysis-only oracles."""

SAMPLE_ID = "sample_id"
"""``info``: the id of the sample the step acted on (of ``reset``: the next one)."""
GLOBAL_STEP = "global_step"
"""``info``: the step's position since the start of the run."""
CALIBRATION = "calibration"
"""``info``: the step visited a held-out labeled sample."""
SCORED = "scored"
"""``info``: the reward scored the step's label per choice."""
COVERAGE = "coverage"
"""``info``: the fraction of cells the label keeps."""
LABEL_FG_FRACTION = "label_fg_fraction"
"""``info``: the foreground fraction of the kept cells."""
REWARD_COMPONENTS = "reward_components"
"""``info``: the reward's named parts."""
CELL_REWARDS = "cell_rewards"
"""``info``: the per-cell reward (or None)."""
ORACLE = "oracle"
"""``info``: something of the env reads unlabeled ground truth (analysis only)."""
UPDATED = "updated"
"""``info``: the segmenter updated at the end of the step."""
STEP_INFO_KEYS: tuple[str, ...] = (
    SAMPLE_ID, GLOBAL_STEP, CALIBRATION, SCORED, COVERAGE, LABEL_FG_FRACTION,
    REWARD_COMPONENTS, CELL_REWARDS, ORACLE, UPDATED)
"""Keys of every step's ``info``."""
SEGMENTER = "segmenter"
"""``info`` of an update step: the update's statistics (loss, probe mIoU ...)."""
UPDATE_INFO_KEYS: tuple[str, ...] = (SEGMENTER,)
"""Added on steps that update the segmenter (its loss, probe mIoU ...)."""
CELL_SCORES = "cell_scores"
"""``info`` of a scored step: the score of every choice per cell."""
SCORED_INFO_KEYS: tuple[str, ...] = (CELL_SCORES,)
"""Added on steps whose label the reward scores per choice (the held-out calibration steps)."""
PL_PRECISION, PL_FG_PRECISION, PL_RECALL = "pl_precision", "pl_fg_precision", "pl_recall"
PL_SELECTED_PIXELS, PL_CORRECT_PIXELS = "pl_selected_pixels", "pl_correct_pixels"
PL_IOU_PRIOR, PL_IOU_TEACHER, PL_IOU_LABEL = "pl_iou_prior", "pl_iou_teacher", "pl_iou_label"
PL_CELL_CORRECT = "pl_cell_correct"
DIAGNOSTIC_KEYS: tuple[str, ...] = (
    PL_PRECISION, PL_FG_PRECISION, PL_RECALL, PL_SELECTED_PIXELS, PL_CORRECT_PIXELS,
    PL_IOU_PRIOR, PL_IOU_TEACHER, PL_IOU_LABEL, PL_CELL_CORRECT)
"""Measured against unlabeled ground truth (``diagnostics=True``): reported, never learned from.
``pl_iou_*``: IoU of the prior, the teacher and the constructed label with the mask;
``pl_precision``: accuracy of the labeled pixels; ``pl_cell_correct`` ``(G*G,)``: per cell, the
share of pixels the candidate label gets right."""
DIAGNOSTIC_SCALARS: tuple[str, ...] = tuple(k for k in DIAGNOSTIC_KEYS if k != PL_CELL_CORRECT)
"""The diagnostics that are one number per step."""
