"""Full semi-supervised runs of L2L and the comparisons built from them.

* ``l2l-run`` (:mod:`experiments.run`): one run, priors -> supervised warm-up -> self-evolving loop
  -> evaluation, resumable after a kill, on one process or under ``torchrun`` (DDP).
* ``l2l-ablate`` (:mod:`experiments.ablate`): agents x label ratios x seeds, table and plot.
* :mod:`experiments.config`: the typed :class:`~experiments.config.RunConfig`, TOML configs
  (shipped ones in ``experiments/configs``) and ``KEY=VALUE`` overrides.
* :mod:`experiments.runner`: the stages of a run; :mod:`experiments.checkpoint`,
  :mod:`experiments.recorder`, :mod:`experiments.logs`, :mod:`experiments.report`,
  :mod:`experiments.distributed`: its parts.

Nothing heavy is imported here, so ``l2l-run --dry-run`` starts fast.
"""
