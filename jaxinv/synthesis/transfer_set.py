"""TransferSet: the synthesised stand-in for the training data, with what produced it."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

_ARRAYS = ("images", "logits", "targets", "classes", "betas", "chunks")


@dataclasses.dataclass(frozen=True)
class TransferSet:
    """Synthesised images and everything a downstream task may want to know about them.

    Attributes:
      images: (N, H, W, C) float32 in [0, 1].
      logits: (N, K) the teacher's logits on `images` (temperature 1).
      targets: (N, K) the output each image was optimised towards (probabilities).
      classes: (N,) int32 the class each target was drawn for.
      betas: (N,) float32 the Dirichlet scale β of each target (0 for one-hot targets).
      chunks: (N,) int32 the synthesis chunk each example came from.
      method: the synthesis method's name.
      seed: the run seed.
      config: the method's settings (JSON-serialisable).
    """
    images: np.ndarray
    logits: np.ndarray
    targets: np.ndarray
    classes: np.ndarray
    betas: np.ndarray
    chunks: np.ndarray
    method: str
    seed: int
    config: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        n = len(self.images)
        if self.images.ndim != 4:
            raise ValueError(f"TransferSet images must be (N, H, W, C); got {self.images.shape}.")
        for name in _ARRAYS[1:]:
            if len(getattr(self, name)) != n:
                raise ValueError(f"TransferSet.{name} has {len(getattr(self, name))} rows but "
                                 f"there are {n} images.")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: np.ndarray) -> TransferSet:
        """The examples at `indices` (e.g. the first M for a transfer-set-size study)."""
        return dataclasses.replace(self, **{k: getattr(self, k)[indices] for k in _ARRAYS})

    def check_image_shape(self, image_shape: tuple[int, ...]) -> None:
        """Raises a clear error when these images do not fit a student taking `image_shape`."""
        if tuple(self.images.shape[1:]) != tuple(image_shape):
            raise ValueError(
                f"The TransferSet holds images of shape {self.images.shape[1:]} but the student "
                f"takes {tuple(image_shape)}; synthesise from a teacher with the student's input "
                "shape, or resize the images first.")

    def save(self, path: str) -> None:
        """Writes an .npz (no pickle: metadata is a JSON string) via a temporary file."""
        meta = json.dumps({"method": self.method, "seed": self.seed, "config": self.config})
        tmp = f"{path}.tmp.npz"
        np.savez(tmp, meta=np.array(meta), **{k: getattr(self, k) for k in _ARRAYS})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> TransferSet:
        """Reads a file written by :meth:`save`."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"No TransferSet at {path}; synthesise one first.")
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in (*_ARRAYS, "meta") if k not in f]
            if missing:
                raise ValueError(f"{path} is not a TransferSet file: missing {missing}.")
            meta = json.loads(str(f["meta"]))
            return cls(**{k: f[k] for k in _ARRAYS}, method=meta["method"], seed=meta["seed"],
                       config=meta["config"])
