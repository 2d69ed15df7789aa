"""TransferSet: the synthesised stand-in for the training data, with what produced it."""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from typing import Any

import numpy as np

_ARRAYS = ("images", "logits", "targets")
_METADATA_PREFIX = "metadata."


class DamagedFileError(ValueError):
    """A file that jaxinv wrote is truncated or corrupt; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class TransferSet:
    """Synthesised images and everything a downstream task may want to know about them.

    Attributes:
      images: (N, H, W, C) float32 in [0, 1].
      logits: (N, K) the teacher's logits on `images` (temperature 1).
      targets: (N, K) what each image was optimised towards (probabilities for Data
        Impressions, virtual logits for Data from Model, ...).
      metadata: per-example arrays of leading size N, free-form per method (e.g. "class",
        "beta", "chunk", "background_index", "round").
      method: the synthesis method's name.
      seed: the run seed.
      config: the method's settings (JSON-serialisable).
    """
    images: np.ndarray
    logits: np.ndarray
    targets: np.ndarray
    metadata: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    method: str = ""
    seed: int = 0
    config: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        n = len(self.images)
        if self.images.ndim != 4:
            raise ValueError(f"TransferSet images must be (N, H, W, C); got {self.images.shape}.")
        for name, array in (*((k, getattr(self, k)) for k in _ARRAYS[1:]),
                            *((f"metadata[{k!r}]", v) for k, v in self.metadata.items())):
            if len(array) != n:
                raise ValueError(f"TransferSet.{name} has {len(array)} rows but there are {n} "
                                 "images.")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(self.images.shape[1:])

    def subset(self, indices: np.ndarray) -> TransferSet:
        """The examples at `indices` (e.g. the first M for a transfer-set-size study)."""
        return dataclasses.replace(
            self, **{k: getattr(self, k)[indices] for k in _ARRAYS},
            metadata={k: v[indices] for k, v in self.metadata.items()})

    def check_image_shape(self, image_shape: tuple[int, ...], what: str = "the student") -> None:
        """Raises a clear error when these images do not fit a model taking `image_shape`."""
        if self.image_shape != tuple(image_shape):
            raise ValueError(
                f"The TransferSet holds images of shape {self.image_shape} but {what} takes "
                f"{tuple(image_shape)}; synthesise from a teacher with that input shape, or "
                "resize the images first.")

    def save(self, path: str) -> None:
        """Writes an .npz (no pickle: method, seed and config are a JSON string) atomically."""
        meta = json.dumps({"method": self.method, "seed": self.seed, "config": self.config})
        tmp = f"{path}.tmp.npz"
        np.savez(tmp, meta=np.array(meta), **{k: getattr(self, k) for k in _ARRAYS},
                 **{_METADATA_PREFIX + k: v for k, v in self.metadata.items()})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> TransferSet:
        """Reads a file written by :meth:`save`.

        Raises:
          FileNotFoundError: no file at `path`.
          DamagedFileError: the file is truncated or not a TransferSet.
        """
        if not os.path.exists(path):
            raise FileNotFoundError(f"No TransferSet at {path}; synthesise one first.")
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = [k for k in (*_ARRAYS, "meta") if k not in f.files]
                if missing:
                    raise DamagedFileError(f"{path} is not a TransferSet file (it lacks "
                                           f"{missing}); delete it and rerun to make it again.")
                meta = json.loads(str(f["meta"]))
                metadata = {k[len(_METADATA_PREFIX):]: f[k] for k in f.files
                            if k.startswith(_METADATA_PREFIX)}
                return cls(**{k: f[k] for k in _ARRAYS}, metadata=metadata,
                           method=meta["method"], seed=meta["seed"], config=meta["config"])
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
            if isinstance(err, DamagedFileError):
                raise
            raise DamagedFileError(f"{path} is damaged ({type(err).__name__}: {err}); delete it "
                                   "and rerun the same command, which synthesises it "
                                   "again.") from err
