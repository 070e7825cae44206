"""Helpers every package of L2L shares (they depend on no other part of it): atomic file writes
(:mod:`~segmenter.shared.files`), strict typed configs (:mod:`~segmenter.shared.typed`), the keyed
batch loader (:mod:`~segmenter.shared.loader`), the keyed disk cache with its one warning channel
(:mod:`~segmenter.shared.disk_cache`) and named random streams (:mod:`~segmenter.shared.rng`).
They live in the lowest layer, ``segmenter``, so that ``l2l_env``, ``agents`` and ``experiments``
can all use them."""
