"""What every provider that runs a local transformers checkpoint shares: finding the folder and
its ``model_type``, the dtype, image conversion, and grounding in batches
(:class:`LocalModelGrounder`). Checkpoints are read from local folders only, never downloaded."""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from l2l_env.data.types import ReferringSample
from l2l_env.priors.base import Grounding, PriorProvider


def checkpoint_folder(model: str | Path, what: str) -> Path:
    """The resolved local folder ``model``; a clear error when it does not exist."""
    path = Path(model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} checkpoint folder {str(path)!r} does not exist "
                                "(pass a local path; models are never downloaded)")
    return path.resolve()


def model_type(model_dir: str | Path, what: str) -> str:
    """``model_type`` from the ``config.json`` of a local checkpoint folder."""
    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: no config.json; {what} loads a local "
                                "checkpoint folder (downloads are not attempted)")
    return str(json.loads(cfg_path.read_text()).get("model_type", ""))


def checkpoint_family(model_dir: str | Path, what: str, families: Mapping[str, str]) -> str:
    """The family (a key of ``families``, which maps family -> ``model_type``) of a checkpoint;
    an error naming the folder, its ``model_type`` and the supported families otherwise."""
    found = model_type(model_dir, what)
    for family, mtype in families.items():
        if found == mtype:
            return family
    raise ValueError(f"{Path(model_dir) / 'config.json'}: model_type {found!r} is not supported "
                     f"by {what}; expected one of {sorted(families)} "
                     f"(model_type {sorted(families.values())})")


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype | str:
    """``None`` -> float32 on CPU, the checkpoint's own (``"auto"``) elsewhere; names -> dtypes."""
    if dtype is None:
        return torch.float32 if torch.device(device).type == "cpu" else "auto"
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"dtype {dtype!r} is not a torch dtype name (e.g. 'float32', "
                         "'bfloat16') or 'auto'")
    return resolved


def to_pil(image: np.ndarray) -> Image.Image:
    """An ``HxWx3`` (or ``HxW``) uint8 array -> an RGB PIL image."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image must be HxWx3 uint8, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got dtype {arr.dtype}")
    return Image.fromarray(arr[:, :, :3])


class LocalModelGrounder(PriorProvider):
    """A provider that grounds image-phrase pairs with a local model, ``batch_size`` at a time;
    subclasses implement :meth:`ground_chunk` on one batch of PIL images."""

    batch_size: int = 8

    def load_model(self, model_class: type, dtype: str | torch.dtype | None, device: str
                   ) -> None:
        """Load ``model_class`` from the checkpoint folder ``self.path`` onto ``device``, for
        inference (``dtype``: :func:`resolve_dtype`); sets ``device``, ``model`` and ``dtype``."""
        self.device = torch.device(device)
        self.model = model_class.from_pretrained(
            self.path, dtype=resolve_dtype(dtype, device)).to(self.device).eval()
        self.dtype = next(self.model.parameters()).dtype

    def ground_batch(self, samples: Sequence[ReferringSample],
                     split: str | None = None) -> list[Grounding]:
        """One grounding per sample (``split`` is ignored: a model grounds every split alike)."""
        return self.ground_images([s.image for s in samples], [s.phrase for s in samples])

    def ground_image(self, image: np.ndarray, phrase: str) -> Grounding:
        """Ground one phrase in one ``HxWx3`` uint8 image."""
        return self.ground_images([image], [phrase])[0]

    def ground_images(self, images: Sequence[np.ndarray], phrases: Sequence[str]
                      ) -> list[Grounding]:
        """Ground ``phrases[i]`` in ``images[i]``, ``batch_size`` pairs per model call."""
        if len(images) != len(phrases):
            raise ValueError(f"got {len(images)} images but {len(phrases)} phrases")
        out: list[Grounding] = []
        for start in range(0, len(images), self.batch_size):
            chunk = [to_pil(im) for im in images[start:start + self.batch_size]]
            out.extend(self.ground_chunk(chunk, list(phrases[start:start + self.batch_size])))
        return out

    @abc.abstractmethod
    def ground_chunk(self, images: list[Image.Image], phrases: list[str]) -> list[Grounding]:
        """The groundings of one batch (boxes in pixels of each image)."""
