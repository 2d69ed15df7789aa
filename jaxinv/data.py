"""Named datasets as host arrays, the papers' preprocessing, and seeded, resumable batching.

Every loader returns images as float32 NHWC in [0, 1] (C = 1 for grayscale) and int32 labels.
Data is looked for, in order, in

1. ``<data_dir>/<file>.npz`` (``data_dir`` defaults to ``$JAXINV_DATA_DIR``): uint8 images
   (grayscale without a channel axis) under ``x_train``/``x_test`` and labels under
   ``y_train``/``y_test``, as in ``shared/data/README.md``;
2. an already prepared tensorflow-datasets directory (never downloaded here).

``digits`` is scikit-learn's bundled 8x8 digits and needs neither.

Batching is a pure function of ``(seed, step)``, so a run resumed at step ``s`` sees exactly
the batches that an uninterrupted run sees from step ``s`` on.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import zipfile
import zlib
from collections.abc import Iterator, Mapping

import jax
import numpy as np
from jax.sharding import Mesh

from jaxinv import parallel
from jaxinv.validation import is_count

DATA_DIR_ENV = "JAXINV_DATA_DIR"
SPLITS = ("train", "test")

_DIGIT_NAMES = tuple(str(d) for d in range(10))


@dataclasses.dataclass(frozen=True)
class _FileSpec:
    """Where a file-backed dataset lives and what its stored arrays must look like."""

    files: Mapping[str, str]  # split -> npz file name
    stored_shape: tuple[int, ...]  # one stored image: (H, W) grayscale or (H, W, C) colour
    class_names: tuple[str, ...]
    default_image_size: int
    tfds_name: str | None  # None: tensorflow-datasets has no builder for it
    notes: Mapping[str, str]  # split -> caveat that applies to the npz copy
    grayscale: bool = False  # colour stored, served as one luma channel


_FILE_SPECS: dict[str, _FileSpec] = {
    "mnist": _FileSpec(
        files={"train": "mnist.npz", "test": "mnist.npz"},
        stored_shape=(28, 28),
        class_names=_DIGIT_NAMES,
        default_image_size=32,  # the papers pad/resize MNIST to 32x32 for LeNet-5
        tfds_name="mnist",
        notes={},
    ),
    "fashion_mnist": _FileSpec(
        files={"train": "fashion_mnist.npz", "test": "fashion_mnist.npz"},
        stored_shape=(28, 28),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                     "Sneaker", "Bag", "Ankle boot"),
        default_image_size=32,
        tfds_name="fashion_mnist",
        notes={},
    ),
    "usps": _FileSpec(
        files={"train": "usps.npz", "test": "usps.npz"},
        stored_shape=(16, 16),
        class_names=_DIGIT_NAMES,
        default_image_size=32,  # so that MNIST-trained teachers can be adapted to it
        tfds_name=None,
        notes={},
    ),
    "cifar10": _FileSpec(
        files={"train": "cifar10_train_first4000_exact.npz", "test": "cifar10_test_jpeg_q75.npz"},
        stored_shape=(32, 32, 3),
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                     "ship", "truck"),
        default_image_size=32,
        tfds_name="cifar10",
        notes={
            "train": "partial exact CIFAR-10 train set: only the first 4000 of the 50000 "
                     "training images, in the original order",
            "test": "lossy JPEG q75 CIFAR-10 test set: accuracy is close to, not equal to, the "
                    "real test set",
        },
    ),
}
_CIFAR100_NAMES = tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl
boy bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach
couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail
snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())
# CIFAR-100 (fine labels) is not in shared/data either: tensorflow-datasets' cifar100.
_FILE_SPECS["cifar100"] = _FileSpec(
    files={"train": "cifar100.npz", "test": "cifar100.npz"}, stored_shape=(32, 32, 3),
    class_names=_CIFAR100_NAMES, default_image_size=32, tfds_name="cifar100", notes={})
# SVHN is not in shared/data; it comes from tensorflow-datasets' svhn_cropped (or an npz file
# of that layout). `svhn_gray` serves it as one channel, as ADDA adapts SVHN -> MNIST.
_SVHN = dict(files={"train": "svhn.npz", "test": "svhn.npz"}, stored_shape=(32, 32, 3),
             class_names=_DIGIT_NAMES, default_image_size=32, tfds_name="svhn_cropped",
             notes={})
_FILE_SPECS["svhn"] = _FileSpec(**_SVHN)
_FILE_SPECS["svhn_gray"] = _FileSpec(**_SVHN, grayscale=True)
# ITU-R BT.601 luma weights, as tf.image.rgb_to_grayscale (which ADDA's code uses).
_LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)

_SUBSAMPLE_STREAM = 1  # keeps subsample's draws apart from the batch permutations of a seed
_EVALUATION_STREAM = 2  # the fixed shuffle of evaluation_subset

_DIGITS_SIZE = 8
_DIGITS_MAX_VALUE = 16.0  # load_digits stores integer intensities 0..16
_DIGITS_SPLIT_SEED = 0
_DIGITS_TEST_FRACTION = 0.2

DATASET_NAMES: tuple[str, ...] = (*_FILE_SPECS, "digits")


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: `==` on array fields is ambiguous
class Dataset:
    """One split of a named dataset, preprocessed and held in host memory.

    Attributes:
      name: one of :data:`DATASET_NAMES`.
      split: "train" or "test".
      images: (N, H, W, C) float32 in [0, 1]; C = 1 for grayscale, 3 for colour.
      labels: (N,) int32 in [0, num_classes).
      num_classes: number of classes.
      class_names: num_classes human-readable names, indexed by label.
      source: the npz path read, ``"tfds:<name>"`` or ``"sklearn"``.
      note: caveats on using this copy (e.g. lossy or partial); empty when there are none.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    source: str
    note: str


def default_image_size(name: str) -> int:
    """Side length the papers train at: 32 for MNIST, Fashion-MNIST, USPS, CIFAR-10; 8 digits."""
    check_dataset_name(name)
    if name == "digits":
        return _DIGITS_SIZE
    return _FILE_SPECS[name].default_image_size


def load_dataset(name: str, split: str = "train", *, image_size: int | None = None,
                 data_dir: str | None = None, tfds_data_dir: str | None = None,
                 limit: int | None = None) -> Dataset:
    """Loads one split of a named dataset, resized to `image_size` x `image_size`.

    Args:
      name: one of :data:`DATASET_NAMES`.
      split: "train" or "test".
      image_size: output side length; defaults to :func:`default_image_size`. Resizing is
        bilinear with half-pixel centres (antialiased when shrinking), as `jax.image.resize`.
      data_dir: folder holding the npz files; defaults to ``$JAXINV_DATA_DIR``.
      tfds_data_dir: prepared tensorflow-datasets folder, tried when no npz file exists;
        defaults to tensorflow-datasets' own default (``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``). Nothing is ever downloaded.
      limit: keep only the first `limit` examples (for fast tests).

    Returns:
      A :class:`Dataset` with images (N, image_size, image_size, C) float32 in [0, 1].

    Raises:
      ValueError: unknown name or split, bad `image_size` or `limit`, or a corrupt npz file.
      FileNotFoundError: the data is in none of the places looked in; the message lists them.
    """
    check_dataset_name(name)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} for dataset {name!r}; valid splits: {SPLITS}.")
    if image_size is None:
        image_size = default_image_size(name)
    if image_size < 1:
        raise ValueError(f"image_size must be a positive side length, got {image_size}.")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of examples or None, got {limit}.")

    if name == "digits":
        images, labels = _load_digits(split)
        class_names, source = _DIGIT_NAMES, "sklearn"
        note = (f"scikit-learn 8x8 digits with a seeded stratified "
                f"{1 - _DIGITS_TEST_FRACTION:.0%}/{_DIGITS_TEST_FRACTION:.0%} train/test split")
        images, labels = images[:limit], labels[:limit]
    else:
        spec = _FILE_SPECS[name]
        images, labels, source, note = _load_stored(name, split, spec, data_dir, tfds_data_dir,
                                                    limit)
        class_names = spec.class_names
        # Slicing before the conversion keeps `limit` cheap on the 60k-image sets.
        images = images.astype(np.float32) / 255.0
        if spec.grayscale:
            images = images @ _LUMA[:, None]

    images = resize_images(images, image_size)
    return Dataset(name=name, split=split, images=images, labels=labels.astype(np.int32),
                   num_classes=len(class_names), class_names=class_names, source=source,
                   note=note)


def resize_images(images: np.ndarray, image_size: int) -> np.ndarray:
    """Bilinear resize of (N, H, W, C) float images in [0, 1] to (N, S, S, C), S = image_size.

    Matches `jax.image.resize(..., method="linear")` (half-pixel centres, antialiased when
    shrinking) but runs as two matrix products in numpy on the host, so that 70k MNIST images
    take well under a second and never travel to an accelerator.
    """
    _, height, width, _ = images.shape
    if (height, width) == (image_size, image_size):
        return images
    rows = _linear_resize_matrix(height, image_size)  # (S, H)
    cols = _linear_resize_matrix(width, image_size)  # (S, W)
    resized = np.tensordot(images, rows, axes=([1], [1]))  # (N, W, C, S)
    resized = np.tensordot(resized, cols, axes=([1], [1]))  # (N, C, S, S)
    # The weights are a convex combination, so only rounding can leave [0, 1].
    return np.clip(resized.transpose(0, 2, 3, 1), 0.0, 1.0)


def subsample(dataset: Dataset, num_examples: int, seed: int) -> Dataset:
    """`num_examples` examples of `dataset` drawn at random without replacement, seeded, in
    their original order (the ADDA protocol's 2,000 MNIST or 1,800 USPS training images)."""
    total = len(dataset.labels)
    if not is_count(num_examples) or num_examples > total:
        raise ValueError(f"Cannot sample {num_examples!r} examples from {total}; ask for a "
                         f"whole number between 1 and {total}.")
    keep = np.sort(np.random.default_rng([seed, _SUBSAMPLE_STREAM]).choice(
        total, num_examples, replace=False))
    return dataclasses.replace(dataset, images=dataset.images[keep], labels=dataset.labels[keep],
                               note="; ".join(filter(None, [dataset.note, (
                                   f"{num_examples} examples sampled with seed {seed}")])))


def evaluation_subset(dataset: Dataset, limit: int | None) -> Dataset:
    """The first `limit` examples of a fixed shuffle of `dataset` (None, or ≥ its size: all).

    Test files may be sorted by class (the CIFAR-10 one is), so their first N images would be
    one class; a fixed shuffle keeps every class, and the subsets are nested: a smaller limit
    takes a prefix of a larger one's.
    """
    total = len(dataset.labels)
    if limit is None or limit >= total:
        return dataset
    keep = np.random.default_rng(_EVALUATION_STREAM).permutation(total)[:limit]
    return dataclasses.replace(dataset, images=dataset.images[keep], labels=dataset.labels[keep],
                               note="; ".join(filter(None, [dataset.note, (
                                   f"{limit} examples of a fixed shuffle")])))


def check_classes(classes, num_classes: int, what: str = "classes") -> tuple[int, ...]:
    """`classes` as a tuple of distinct class ids in [0, num_classes), or a clear error."""
    classes = tuple(classes)
    if not classes:
        raise ValueError(f"{what} is empty; name at least one class.")
    unknown = [c for c in classes if not (isinstance(c, int) and 0 <= c < num_classes)]
    if unknown:
        raise ValueError(f"{what} names {unknown}, which are not classes of a dataset with "
                         f"{num_classes} classes (ids 0 to {num_classes - 1}).")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(f"{what} names {repeated} more than once; name each class once.")
    return classes


def select_classes(dataset: Dataset, classes) -> Dataset:
    """The examples of `classes` only, relabelled by position: class `classes[j]` becomes label
    j, and `class_names` follow (a model over a subset of classes, e.g. one incremental step).
    """
    classes = check_classes(classes, dataset.num_classes)
    position = np.full(dataset.num_classes, -1, np.int32)
    position[list(classes)] = np.arange(len(classes), dtype=np.int32)
    keep = np.flatnonzero(position[dataset.labels] >= 0)
    return dataclasses.replace(dataset, images=dataset.images[keep],
                               labels=position[dataset.labels[keep]],
                               num_classes=len(classes),
                               class_names=tuple(dataset.class_names[c] for c in classes))


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices (batch_size,) int64 in [0, num_examples) of the examples in batch `step`.

    A pure function of `(seed, step)`: epoch ``e = step // (num_examples // batch_size)`` reads
    the permutation drawn from ``np.random.default_rng([seed, e])`` in consecutive blocks,
    dropping the last ``num_examples % batch_size`` examples of that permutation. Within an
    epoch every example is seen at most once.
    """
    steps_per_epoch = _steps_per_epoch(num_examples, batch_size)
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}.")
    epoch, offset = divmod(step, steps_per_epoch)
    permutation = _epoch_permutation(num_examples, seed, epoch)
    return permutation[offset * batch_size:(offset + 1) * batch_size]


def iterate_batches(arrays: Mapping[str, np.ndarray], batch_size: int, *, seed: int,
                    start_step: int = 0, num_steps: int | None = None,
                    mesh: Mesh | None = None) -> Iterator[dict[str, jax.Array]]:
    """Yields batches of `arrays` (a dict of rows batched together), sharded over `data`.

    Batch `k` of the iteration is batch ``start_step + k`` of :func:`batch_indices`, so
    resuming at `start_step` reproduces an uninterrupted run exactly.

    Args:
      arrays: host arrays of equal leading size N, e.g. {"images": (N, H, W, C) float32 in
        [0, 1], "labels": (N,)} or {"images", "logits": (N, K)}.
      batch_size: global batch size; at most N and a multiple of the mesh's device count.
      seed: non-negative shuffling seed.
      start_step: first step to yield.
      num_steps: how many batches to yield; None for an endless stream.
      mesh: mesh to shard over; defaults to :func:`parallel.data_mesh`.

    Yields:
      dicts with the keys of `arrays`, global `jax.Array`s of leading size `batch_size`.
    """
    lengths = {k: len(v) for k, v in arrays.items()}
    if not lengths or len(set(lengths.values())) != 1:
        raise ValueError(f"arrays must be a non-empty dict of equal lengths; got {lengths}.")
    num_examples = next(iter(lengths.values()))
    steps_per_epoch = _steps_per_epoch(num_examples, batch_size)
    parallel.check_divisible(batch_size, "batch_size", mesh)
    if start_step < 0:
        raise ValueError(f"start_step must be non-negative, got {start_step}.")
    if num_steps is not None and num_steps < 0:
        raise ValueError(f"num_steps must be non-negative or None, got {num_steps}.")
    return _generate_batches(dict(arrays), num_examples, batch_size, seed, start_step,
                             num_steps, steps_per_epoch, mesh)


def iterate_streams(streams: Mapping[str, Mapping[str, np.ndarray]], batch_size: int, *,
                    seed: int, start_step: int = 0, num_steps: int | None = None,
                    mesh: Mesh | None = None) -> Iterator[dict[str, dict[str, jax.Array]]]:
    """Yields {name: batch} with one batch of each stream, e.g. source and target images.

    Each stream is batched as by :func:`iterate_batches`, with its own shuffle (seed
    ``(seed, k)`` for the k-th stream), so streams of different sizes run side by side and
    a resumed run sees the same batches as an uninterrupted one.
    """
    if not streams:
        raise ValueError("streams must name at least one stream of arrays.")
    iterators = [iterate_batches(arrays, batch_size, seed=(seed, index), start_step=start_step,
                                 num_steps=num_steps, mesh=mesh)
                 for index, arrays in enumerate(streams.values())]
    return (dict(zip(streams, batches, strict=True))
            for batches in zip(*iterators, strict=True))


def padded_batches(arrays: Mapping[str, np.ndarray], batch_size: int,
                   mesh: Mesh | None = None) -> Iterator[tuple[dict[str, jax.Array], int]]:
    """Yields `(batch, num_real)`: `arrays` in order, `batch_size` rows at a time, sharded.

    The last batch is zero-padded up to `batch_size`, so that a jitted function over the
    batches compiles once; only its first `num_real` rows are real. For evaluation, where every
    example is seen once; training batches come from :func:`iterate_batches`.
    """
    parallel.check_divisible(batch_size, "eval batch_size", mesh)
    num_examples = len(next(iter(arrays.values())))
    for start in range(0, num_examples, batch_size):
        batch = {name: np.asarray(value[start:start + batch_size])
                 for name, value in arrays.items()}
        num_real = min(batch_size, num_examples - start)
        if num_real < batch_size:
            batch = {name: np.concatenate([value, np.zeros((batch_size - num_real,
                                                            *value.shape[1:]), value.dtype)])
                     for name, value in batch.items()}
        yield parallel.shard_batch(batch, mesh), num_real


def _generate_batches(arrays: dict[str, np.ndarray], num_examples: int, batch_size: int,
                      seed: int | tuple[int, ...], start_step: int, num_steps: int | None,
                      steps_per_epoch: int, mesh: Mesh | None) -> Iterator[dict[str, jax.Array]]:
    """The generator behind :func:`iterate_batches`, split off so that bad arguments raise at
    the call rather than at the first `next`."""
    # In a multi-host run every process computes the same global indices and feeds only its
    # own block; this assumes each process owns a contiguous block of the mesh, in process
    # order, as `parallel.data_mesh` built from `jax.devices()` gives.
    process_count, process_index = jax.process_count(), jax.process_index()
    steps = itertools.count(start_step)
    if num_steps is not None:
        steps = itertools.islice(steps, num_steps)
    epoch, permutation = None, None
    for step in steps:
        # Same result as batch_indices(), without redrawing the permutation at every step.
        step_epoch, offset = divmod(step, steps_per_epoch)
        if step_epoch != epoch:
            epoch, permutation = step_epoch, _epoch_permutation(num_examples, seed, step_epoch)
        indices = permutation[offset * batch_size:(offset + 1) * batch_size]
        local = indices.reshape(process_count, -1)[process_index]
        yield parallel.shard_batch({k: v[local] for k, v in arrays.items()}, mesh)


def _steps_per_epoch(num_examples: int, batch_size: int) -> int:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if batch_size > num_examples:
        raise ValueError(f"batch_size = {batch_size} exceeds the {num_examples} examples in the "
                         f"dataset; use a batch size of at most {num_examples}.")
    return num_examples // batch_size


def _epoch_permutation(num_examples: int, seed: int | tuple[int, ...], epoch: int) -> np.ndarray:
    return np.random.default_rng([*np.atleast_1d(seed).tolist(), epoch]).permutation(num_examples)


def check_dataset_name(name: str) -> None:
    """Raises a clear error naming the valid datasets when `name` is not one."""
    if name not in DATASET_NAMES:
        raise ValueError(f"Unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}.")


def image_shape(name: str, image_size: int | None = None) -> tuple[int, int, int]:
    """(H, W, C) of the images `load_dataset(name, image_size=...)` returns, without reading."""
    check_dataset_name(name)
    if image_size is None:
        image_size = default_image_size(name)
    if not is_count(image_size):
        raise ValueError(f"image_size must be a whole number ≥ 1, got {image_size!r}.")
    spec = _FILE_SPECS.get(name)
    channels = (1 if spec is None or spec.grayscale else (spec.stored_shape[2:] or (1,))[0])
    return (image_size, image_size, channels)


def class_names(name: str) -> tuple[str, ...]:
    """The names of a named dataset's classes, in label order."""
    check_dataset_name(name)
    return _DIGIT_NAMES if name == "digits" else _FILE_SPECS[name].class_names


def num_classes(name: str) -> int:
    """The number of classes of a named dataset."""
    return len(class_names(name))


def _linear_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float32 weights of 1-D linear interpolation, rows summing to 1.

    Half-pixel centres and, when shrinking, a triangle kernel widened by the scale factor
    (antialiasing), which is what `jax.image.resize` does for "linear".
    """
    scale = in_size / out_size
    centres = (np.arange(out_size) + 0.5) * scale - 0.5
    kernel_width = max(scale, 1.0)
    distance = np.abs(centres[:, None] - np.arange(in_size)[None, :]) / kernel_width
    weights = np.maximum(0.0, 1.0 - distance)
    # Renormalising the truncated kernel at the borders amounts to clamping to the edge pixel.
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (N, 8, 8, 1) float32 in [0, 1] and (N,) labels.

    The split is stratified: within each class, a seeded permutation sends the first 20% to
    test, so both splits keep the ~180-per-class balance. Examples keep their original order.
    """
    from sklearn.datasets import load_digits  # imported here: only this dataset needs sklearn

    bunch = load_digits()
    labels = bunch.target.astype(np.int32)
    order = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(labels))
    is_test = np.zeros(len(labels), bool)
    for digit in range(len(_DIGIT_NAMES)):
        members = order[labels[order] == digit]
        is_test[members[:round(_DIGITS_TEST_FRACTION * len(members))]] = True
    keep = np.flatnonzero(is_test if split == "test" else ~is_test)
    images = (bunch.images[keep] / _DIGITS_MAX_VALUE).astype(np.float32)[..., None]
    return images, labels[keep]


def _load_stored(name: str, split: str, spec: _FileSpec, data_dir: str | None,
                 tfds_data_dir: str | None,
                 limit: int | None) -> tuple[np.ndarray, np.ndarray, str, str]:
    """Reads a file-backed dataset from the npz folder, else from prepared tfds data.

    Returns:
      images (N, H, W, C) uint8, labels (N,) integer, source, note.
    """
    looked_in = []
    data_dir = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if data_dir:
        path = os.path.join(data_dir, spec.files[split])
        if os.path.isfile(path):
            images, labels = _read_npz(path, split, spec)
            images = images[:limit]
            if images.ndim == 3:
                images = images[..., None]
            return images, labels[:limit], path, spec.notes.get(split, "")
        looked_in.append(f"{path} (no such file)")
    else:
        looked_in.append(f"no npz folder: neither data_dir nor ${DATA_DIR_ENV} names one")

    if spec.tfds_name is None:
        looked_in.append(f"tensorflow-datasets: it has no builder for {name}")
    else:
        arrays = _read_tfds(spec, split, tfds_data_dir, limit, looked_in)
        if arrays is not None:
            return (*arrays, f"tfds:{spec.tfds_name}", "")

    how_to_tfds = ("" if spec.tfds_name is None else
                   f", or prepare it with tensorflow-datasets (`tfds build {spec.tfds_name} "
                   f"--file_format=array_record --data_dir=DIR`) and pass tfds_data_dir=DIR")
    raise FileNotFoundError(
        f"Dataset {name!r} (split {split!r}) was not found. Looked in:\n  - "
        + "\n  - ".join(looked_in)
        + f"\nTo provide it, set {DATA_DIR_ENV} (or pass data_dir=) to a folder holding "
        f"{spec.files[split]} with uint8 arrays x_{split} {_shape_text(spec.stored_shape)} and "
        f"y_{split} (N,), as documented in shared/data/README.md{how_to_tfds}.")


def _read_npz(path: str, split: str, spec: _FileSpec) -> tuple[np.ndarray, np.ndarray]:
    """Reads and checks `x_<split>` (N, *stored_shape) uint8 and `y_<split>` (N,) from `path`."""
    image_key, label_key = f"x_{split}", f"y_{split}"
    expected = (f"expected an np.savez(_compressed) file with uint8 {image_key} "
                f"{_shape_text(spec.stored_shape)} and integer {label_key} (N,) in "
                f"[0, {len(spec.class_names)}), readable without pickle")
    # A truncated or foreign file shows up as a zip, zlib or header error, and a pickled
    # payload as a ValueError because allow_pickle=False.
    unreadable = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)
    with open(path, "rb") as f:
        magic = f.read(6)
    if not (magic.startswith(b"PK") or magic == b"\x93NUMPY"):
        raise ValueError(f"{path} is not a valid .npz file (it is not a zip archive); "
                         f"{expected}.")
    try:
        npz = np.load(path, allow_pickle=False)
    except unreadable as err:
        raise ValueError(f"{path} is not a readable npz file ({err}); {expected}.") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single .npy array, not an npz archive; {expected}.")
    with npz:
        missing = [key for key in (image_key, label_key) if key not in npz.files]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)} (it has "
                             f"{', '.join(npz.files) or 'no arrays'}); {expected}.")
        try:
            images, labels = npz[image_key], npz[label_key]
        except unreadable as err:
            raise ValueError(f"{path} could not be read ({err}); {expected}.") from err

    problem = None
    if images.dtype != np.uint8:
        problem = f"{image_key} has dtype {images.dtype}"
    elif images.ndim != 1 + len(spec.stored_shape) or images.shape[1:] != spec.stored_shape:
        problem = f"{image_key} has shape {images.shape}"
    elif not np.issubdtype(labels.dtype, np.integer):
        problem = f"{label_key} has dtype {labels.dtype}"
    elif labels.shape != (len(images),):
        problem = f"{label_key} has shape {labels.shape} for {len(images)} images"
    elif labels.size and (labels.min() < 0 or labels.max() >= len(spec.class_names)):
        problem = f"{label_key} spans [{labels.min()}, {labels.max()}]"
    if problem:
        raise ValueError(f"{path}: {problem}; {expected}.")
    return images, labels


def _read_tfds(spec: _FileSpec, split: str, tfds_data_dir: str | None, limit: int | None,
               looked_in: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Reads prepared tensorflow-datasets data by index, without downloading anything.

    Returns:
      images (N, H, W, C) uint8 and labels (N,); None, after adding to `looked_in` where the
      data was looked for, when it is not prepared.
    """
    try:
        # Imported here: it is slow to import and only needed when no npz file exists.
        import tensorflow_datasets as tfds
    except ImportError:
        looked_in.append("tensorflow-datasets: the package is not installed")
        return None

    builder = tfds.builder(spec.tfds_name, data_dir=tfds_data_dir)
    if not builder.is_prepared():
        looked_in.append(f"tensorflow-datasets data_dir {builder.data_path} "
                         f"({spec.tfds_name} not prepared)")
        return None
    try:
        source = tfds.data_source(spec.tfds_name, split=split, data_dir=tfds_data_dir,
                                  download=False)
    except NotImplementedError as err:
        # Raised for the default TFRecord format, which cannot be read by index.
        raise ValueError(
            f"{builder.data_path} holds {spec.tfds_name} in a format that tfds.data_source "
            f"cannot read ({err}); prepare it again with --file_format=array_record.") from err
    count = len(source) if limit is None else min(limit, len(source))
    records = [source[i] for i in range(count)]
    images = np.stack([np.asarray(record["image"], np.uint8) for record in records])
    labels = np.asarray([record["label"] for record in records], np.int64)
    return images, labels


def _shape_text(stored_shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["N", *map(str, stored_shape)]) + ")"
