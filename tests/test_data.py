"""Tests for jaxinv.data: real files, digits, tfds, every error path, and resumable batching."""

import itertools
import os
import pathlib
import pickle
import re

import chex
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from jax.sharding import Mesh
from tfds_mock import prepare_tfds_metadata

from jaxinv import data, parallel

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def real_data(data_dir, monkeypatch) -> str:
    """Points JAXINV_DATA_DIR at the real data, as a user would."""
    monkeypatch.setenv(data.DATA_DIR_ENV, data_dir)
    return data_dir


@pytest.fixture
def no_data(tmp_path, monkeypatch) -> dict[str, str]:
    """An empty npz folder and an empty tfds folder: nothing can be found."""
    npz_dir, tfds_dir = tmp_path / "npz", tmp_path / "tfds"
    npz_dir.mkdir()
    tfds_dir.mkdir()
    monkeypatch.setenv(data.DATA_DIR_ENV, str(npz_dir))
    return {"npz_dir": str(npz_dir), "tfds_data_dir": str(tfds_dir)}


def _check_images(dataset: data.Dataset, num_examples: int, size: int, channels: int) -> None:
    chex.assert_shape(dataset.images, (num_examples, size, size, channels))
    chex.assert_shape(dataset.labels, (num_examples,))
    chex.assert_type([dataset.images, dataset.labels], [np.float32, np.int32])
    assert 0.0 <= dataset.images.min() and dataset.images.max() <= 1.0
    assert dataset.num_classes == len(dataset.class_names) == 10
    assert set(np.unique(dataset.labels)) == set(range(10))


# ----------------------------------------------------------------------------- real files


@pytest.mark.parametrize("name, split, num_examples, size, channels", [
    ("mnist", "test", 10000, 32, 1),
    ("fashion_mnist", "train", 60000, 32, 1),
    ("fashion_mnist", "test", 10000, 32, 1),
    ("usps", "train", 7291, 32, 1),
    ("usps", "test", 2007, 32, 1),
    ("cifar10", "train", 4000, 32, 3),
    ("cifar10", "test", 10000, 32, 3),
])
def test_real_files_load_at_default_size(real_data, name, split, num_examples, size, channels):
    dataset = data.load_dataset(name, split)
    _check_images(dataset, num_examples, size, channels)
    assert dataset.source == os.path.join(real_data, data._FILE_SPECS[name].files[split])
    assert (dataset.name, dataset.split) == (name, split)


def test_mnist_train_statistics_and_resize(real_data):
    native = data.load_dataset("mnist", "train", image_size=28)
    _check_images(native, 60000, 28, 1)
    # The standard normalisation constants prove the /255 scaling and the exact pixels.
    np.testing.assert_allclose([native.images.mean(), native.images.std()], [0.1307, 0.3081],
                               atol=5e-5)
    resized = data.load_dataset("mnist", "train", limit=100)
    chex.assert_shape(resized.images, (100, 32, 32, 1))
    np.testing.assert_allclose(resized.images, data.resize_images(native.images[:100], 32))
    np.testing.assert_array_equal(resized.labels, native.labels[:100])


def test_mnist_test_label_counts(real_data):
    dataset = data.load_dataset("mnist", "test")
    assert np.bincount(dataset.labels).tolist() == MNIST_TEST_COUNTS
    assert dataset.note == ""


def test_fashion_mnist_statistics_and_classes(real_data):
    dataset = data.load_dataset("fashion_mnist", "test", image_size=28)
    assert np.bincount(dataset.labels).tolist() == [1000] * 10
    assert dataset.class_names[0] == "T-shirt/top" and dataset.class_names[9] == "Ankle boot"


def test_usps_resizes_to_configured_size(real_data):
    dataset = data.load_dataset("usps", "test", image_size=28)
    _check_images(dataset, 2007, 28, 1)
    native = data.load_dataset("usps", "test", image_size=16)
    # USPS backgrounds are -1 in the native range, stored as 0.
    assert np.median(native.images) == 0.0 and native.images.max() == 1.0


def test_cifar10_files_are_labelled_partial_and_lossy(real_data):
    train = data.load_dataset("cifar10", "train", limit=10)
    assert train.labels.tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert "partial" in train.note and "4000" in train.note
    test = data.load_dataset("cifar10", "test", limit=10)
    assert "lossy JPEG q75" in test.note and "not equal" in test.note
    assert test.class_names[0] == "airplane" and test.class_names[9] == "truck"


def test_limit_keeps_first_examples(real_data):
    full = data.load_dataset("usps", "train")
    first = data.load_dataset("usps", "train", limit=5)
    np.testing.assert_array_equal(first.images, full.images[:5])
    np.testing.assert_array_equal(first.labels, full.labels[:5])


def test_data_dir_argument_overrides_env(data_dir, no_data):
    dataset = data.load_dataset("usps", "test", data_dir=data_dir, limit=3)
    assert dataset.source == os.path.join(data_dir, "usps.npz")


def test_resize_matches_jax_image_resize():
    images = np.random.default_rng(0).random((3, 28, 28, 2), dtype=np.float32)
    for size in (8, 16, 32, 56):
        expected = jax.image.resize(images, (3, size, size, 2), method="linear")
        np.testing.assert_allclose(data.resize_images(images, size), expected, atol=1e-6)


# ----------------------------------------------------------------------------- digits


def test_digits_split_is_deterministic_stratified_and_disjoint(no_data):
    train, test = data.load_dataset("digits", "train"), data.load_dataset("digits", "test")
    assert len(train.labels) + len(test.labels) == 1797
    _check_images(train, len(train.labels), 8, 1)
    _check_images(test, len(test.labels), 8, 1)
    assert train.source == "sklearn" and train.images.max() == 1.0
    # ~20% of each class (174..183 examples) goes to test.
    assert np.all(np.abs(np.bincount(test.labels) - 36) <= 1)
    train_rows = {image.tobytes() for image in train.images}
    assert sum(image.tobytes() in train_rows for image in test.images) <= 10  # a few duplicates
    again = data.load_dataset("digits", "test")
    np.testing.assert_array_equal(again.images, test.images)
    chex.assert_shape(data.load_dataset("digits", image_size=16, limit=4).images, (4, 16, 16, 1))


def test_default_image_sizes():
    assert [data.default_image_size(name) for name in data.DATASET_NAMES] == [32] * 7 + [8]
    assert set(data.DATASET_NAMES) == {"mnist", "fashion_mnist", "usps", "cifar10", "cifar100",
                                       "svhn", "svhn_gray", "digits"}


def test_image_shape_and_num_classes_match_loaded_data_without_reading(real_data):
    """The shape and class count stages check configs with are those load_dataset returns."""
    for name, image_size in (("mnist", None), ("usps", 28), ("cifar10", None), ("digits", 16)):
        dataset = data.load_dataset(name, "test", image_size=image_size, limit=2)
        assert data.image_shape(name, image_size) == dataset.images.shape[1:]
        assert data.num_classes(name) == dataset.num_classes == 10
    with pytest.raises(ValueError, match="image_size must be a whole number"):
        data.image_shape("mnist", 0)
    with pytest.raises(ValueError, match="valid names: mnist"):
        data.num_classes("imagenet")


# ----------------------------------------------------------------------------- errors


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: mnist, fashion_mnist, usps, cifar10, cif"):
        data.load_dataset("imagenet")
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'"):
        data.default_image_size("imagenet")


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "validation"}, "Unknown split 'validation'"),
    ({"image_size": 0}, "image_size must be a positive"),
    ({"limit": 0}, "limit must be a positive"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load_dataset("digits", **kwargs)


@pytest.mark.parametrize("name, split, file_name", [
    ("mnist", "train", "mnist.npz"),
    ("cifar10", "test", "cifar10_test_jpeg_q75.npz"),
])
def test_missing_data_names_every_place_looked_in(no_data, name, split, file_name):
    with pytest.raises(FileNotFoundError) as raised:
        data.load_dataset(name, split, tfds_data_dir=no_data["tfds_data_dir"])
    message = str(raised.value)
    assert os.path.join(no_data["npz_dir"], file_name) in message
    assert no_data["tfds_data_dir"] in message and "not prepared" in message
    assert "JAXINV_DATA_DIR" in message and "shared/data/README.md" in message
    assert f"tfds build {name}" in message


def test_missing_usps_without_data_dir(no_data, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV)
    with pytest.raises(FileNotFoundError) as raised:
        data.load_dataset("usps")
    message = str(raised.value)
    assert "neither data_dir nor $JAXINV_DATA_DIR" in message
    assert "no builder for usps" in message and "usps.npz" in message


def _save_mnist(path, *, images=None, labels=None, **arrays) -> None:
    """Writes an mnist.npz with 4 valid test examples unless overridden."""
    images = np.zeros((4, 28, 28), np.uint8) if images is None else images
    labels = np.arange(4, dtype=np.uint8) if labels is None else labels
    np.savez_compressed(path, x_test=images, y_test=labels, **arrays)


def _write_truncated(path) -> None:
    _save_mnist(path, images=np.random.default_rng(0).integers(0, 255, (4, 28, 28), np.uint8))
    content = path.read_bytes()
    path.write_bytes(content[:len(content) // 2])


def _write_pickle(path) -> None:
    with open(path, "wb") as file:
        pickle.dump({"x_test": np.zeros((4, 28, 28), np.uint8)}, file)


def _write_npy(path) -> None:
    with open(path, "wb") as file:
        np.save(file, np.zeros((4, 28, 28), np.uint8))


@pytest.mark.parametrize("write_fn, problem", [
    (lambda path: path.write_bytes(b"not a zip file at all"), "not a valid .npz file"),
    (_write_truncated, "not a readable npz file|could not be read"),
    (_write_pickle, "not a valid .npz file"),
    (lambda path: _save_mnist(path, labels=np.array([0, 1, 2, None], object)),
     "could not be read.*allow_pickle"),
    (_write_npy, "single .npy array"),
    (lambda path: np.savez(path, x_test=np.zeros((4, 28, 28), np.uint8)), "lacks y_test"),
    (lambda path: _save_mnist(path, images=np.zeros((4, 28, 28), np.float32)),
     "x_test has dtype float32"),
    (lambda path: _save_mnist(path, images=np.zeros((4, 32, 32), np.uint8)),
     r"x_test has shape \(4, 32, 32\)"),
    (lambda path: _save_mnist(path, images=np.zeros((4, 28, 28, 1), np.uint8)),
     r"x_test has shape \(4, 28, 28, 1\)"),
    (lambda path: _save_mnist(path, labels=np.arange(3)), r"y_test has shape \(3,\) for 4"),
    (lambda path: _save_mnist(path, labels=np.array([0, 1, 2, 10])), r"spans \[0, 10\]"),
    (lambda path: _save_mnist(path, labels=np.array([0, 1, 2, -1])), r"spans \[-1, 2\]"),
    (lambda path: _save_mnist(path, labels=np.zeros(4, np.float32)), "y_test has dtype float32"),
])
def test_corrupt_npz_is_rejected(no_data, write_fn, problem):
    path = pathlib.Path(no_data["npz_dir"]) / "mnist.npz"
    write_fn(path)
    with pytest.raises(ValueError) as raised:
        data.load_dataset("mnist", "test", tfds_data_dir=no_data["tfds_data_dir"])
    message = str(raised.value)
    assert str(path) in message and re.search(problem, message), message
    assert r"uint8 x_test (N, 28, 28)" in message  # says what is expected


def test_valid_small_npz_loads(no_data):
    _save_mnist(os.path.join(no_data["npz_dir"], "mnist.npz"))
    dataset = data.load_dataset("mnist", "test", tfds_data_dir=no_data["tfds_data_dir"])
    chex.assert_shape(dataset.images, (4, 32, 32, 1))
    assert dataset.labels.tolist() == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- tfds


@pytest.mark.parametrize("name, channels", [("mnist", 1), ("cifar10", 3)])
def test_tfds_is_used_when_no_npz_exists(no_data, name, channels):
    tfds_dir = no_data["tfds_data_dir"]
    prepare_tfds_metadata(tfds_dir, name, "array_record")
    with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=tfds_dir):
        dataset = data.load_dataset(name, "test", tfds_data_dir=tfds_dir)
        limited = data.load_dataset(name, "train", tfds_data_dir=tfds_dir, limit=3)
    assert dataset.source == f"tfds:{name}" and dataset.note == ""
    chex.assert_shape(dataset.images, (7, 32, 32, channels))
    chex.assert_type([dataset.images, dataset.labels], [np.float32, np.int32])
    assert 0.0 <= dataset.images.min() and dataset.images.max() <= 1.0
    assert np.all((0 <= dataset.labels) & (dataset.labels < 10))
    chex.assert_shape(limited.images, (3, 32, 32, channels))


def test_svhn_comes_from_tfds_svhn_cropped_in_colour_or_gray(no_data):
    tfds_dir = no_data["tfds_data_dir"]
    prepare_tfds_metadata(tfds_dir, "svhn_cropped", "array_record")
    with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=tfds_dir):
        colour = data.load_dataset("svhn", "test", tfds_data_dir=tfds_dir)
        gray = data.load_dataset("svhn_gray", "test", image_size=28, tfds_data_dir=tfds_dir)
    assert colour.source == gray.source == "tfds:svhn_cropped"
    chex.assert_shape([colour.images, gray.images], [(7, 32, 32, 3), (7, 28, 28, 1)])
    assert data.image_shape("svhn_gray", 28) == (28, 28, 1)
    assert 0.0 <= gray.images.min() and gray.images.max() <= 1.0
    # Luma of the same pixels: the weights sum to one, so gray stays within the colour range.
    luma = data.resize_images(colour.images, 28) @ np.array([0.2989, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(gray.images[..., 0], luma, atol=1e-5)


def test_subsample_is_seeded_without_replacement_and_checked(real_data):
    usps = data.load_dataset("usps", "train", image_size=16)
    first, again = data.subsample(usps, 1800, 0), data.subsample(usps, 1800, 0)
    other = data.subsample(usps, 1800, 1)
    np.testing.assert_array_equal(first.images, again.images)
    assert len(first.labels) == 1800 and not np.array_equal(first.labels, other.labels)
    assert len(np.unique(first.images.reshape(1800, -1), axis=0)) > 1790  # no repeats drawn
    assert np.bincount(first.labels, minlength=10).min() > 90  # every digit is there
    with pytest.raises(ValueError, match="between 1 and 7291"):
        data.subsample(usps, 8000, 0)


def test_evaluation_subset_of_the_class_sorted_cifar10_test_file_holds_every_class(real_data):
    test = data.load_dataset("cifar10", "test")
    assert (test.labels[:200] == 0).all()  # why a prefix will not do
    small, large = data.evaluation_subset(test, 200), data.evaluation_subset(test, 2000)
    assert len(small.labels) == 200 and np.bincount(small.labels).min() >= 8
    np.testing.assert_array_equal(small.images, large.images[:200])  # nested
    assert data.evaluation_subset(test, None) is test
    assert data.evaluation_subset(test, 10 ** 6) is test


def test_streams_are_batched_each_on_its_own_and_resume_exactly():
    streams = {"source": {"x": np.arange(80)}, "target": {"x": np.arange(100, 156)}}
    run = list(data.iterate_streams(streams, 16, seed=3, num_steps=8))
    resumed = list(data.iterate_streams(streams, 16, seed=3, start_step=5, num_steps=3))
    assert all(np.all(b["source"]["x"] < 80) and np.all(b["target"]["x"] >= 100) for b in run)
    for a, b in zip(run[5:], resumed, strict=True):
        np.testing.assert_array_equal(a["target"]["x"], b["target"]["x"])
    # Every source example once per epoch of 5 steps, whatever the target stream's length.
    assert sorted(np.concatenate([b["source"]["x"] for b in run[:5]])) == list(range(80))


def test_npz_takes_precedence_over_tfds(no_data):
    tfds_dir = no_data["tfds_data_dir"]
    prepare_tfds_metadata(tfds_dir, "mnist", "array_record")
    path = os.path.join(no_data["npz_dir"], "mnist.npz")
    _save_mnist(path)
    with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=tfds_dir):
        dataset = data.load_dataset("mnist", "test", tfds_data_dir=tfds_dir)
    assert dataset.source == path


def test_tfds_in_unindexable_format_says_how_to_fix(no_data):
    tfds_dir = no_data["tfds_data_dir"]
    prepare_tfds_metadata(tfds_dir, "mnist", "tfrecord")
    with pytest.raises(ValueError, match="--file_format=array_record"):
        data.load_dataset("mnist", "test", tfds_data_dir=tfds_dir)


# ----------------------------------------------------------------------------- batching


def test_batch_indices_is_a_pure_function_of_seed_and_step():
    first = data.batch_indices(100, 16, seed=3, step=7)
    chex.assert_shape(first, (16,))
    np.testing.assert_array_equal(first, data.batch_indices(100, 16, seed=3, step=7))
    assert not np.array_equal(first, data.batch_indices(100, 16, seed=4, step=7))
    assert not np.array_equal(first, data.batch_indices(100, 16, seed=3, step=8))


@pytest.mark.parametrize("num_examples, batch_size", [(96, 16), (100, 16), (7, 7)])
def test_every_example_at_most_once_per_epoch(num_examples, batch_size):
    steps_per_epoch = num_examples // batch_size
    epochs = []
    for epoch in range(3):
        steps = range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch)
        seen = np.concatenate([data.batch_indices(num_examples, batch_size, 0, s) for s in steps])
        assert len(np.unique(seen)) == steps_per_epoch * batch_size
        assert seen.min() >= 0 and seen.max() < num_examples
        if num_examples % batch_size == 0:
            assert sorted(seen) == list(range(num_examples))
        epochs.append(seen)
    if num_examples > 1:
        assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch


@pytest.mark.parametrize("num_examples, batch_size, step, message", [
    (10, 11, 0, "batch_size = 11 exceeds the 10 examples"),
    (10, 0, 0, "batch_size must be positive"),
    (10, 5, -1, "step must be non-negative"),
])
def test_batch_indices_errors(num_examples, batch_size, step, message):
    with pytest.raises(ValueError, match=message):
        data.batch_indices(num_examples, batch_size, seed=0, step=step)


def _toy_arrays(num_examples: int = 50) -> dict[str, np.ndarray]:
    """Images whose single pixel is the example's index, 2-D logits-like targets and labels."""
    images = np.arange(num_examples, dtype=np.float32).reshape(num_examples, 1, 1, 1)
    targets = np.stack([np.arange(num_examples), -np.arange(num_examples)], axis=1)
    return {"images": images, "targets": targets.astype(np.float32),
            "labels": (np.arange(num_examples) % 10).astype(np.int32)}


def test_iterate_batches_on_default_mesh_follows_batch_indices():
    arrays = _toy_arrays()
    batch_size = 2 * parallel.num_data_shards()
    batches = list(data.iterate_batches(arrays, batch_size, seed=5, num_steps=8))
    assert len(batches) == 8
    for step, batch in enumerate(batches):
        assert isinstance(batch, dict) and set(batch) == {"images", "targets", "labels"}
        for value in batch.values():
            assert isinstance(value, jax.Array)
            assert value.sharding.is_equivalent_to(parallel.batch_sharded(), value.ndim)
        chex.assert_shape([batch["images"], batch["targets"], batch["labels"]],
                          [(batch_size, 1, 1, 1), (batch_size, 2), (batch_size,)])
        chex.assert_type([batch["images"], batch["labels"]], [np.float32, np.int32])
        indices = data.batch_indices(50, batch_size, seed=5, step=step)
        np.testing.assert_array_equal(np.asarray(batch["images"])[:, 0, 0, 0], indices)
        np.testing.assert_array_equal(np.asarray(batch["targets"]), arrays["targets"][indices])
        np.testing.assert_array_equal(np.asarray(batch["labels"]), arrays["labels"][indices])


def test_resumed_iteration_equals_uninterrupted_one():
    arrays = _toy_arrays()
    batch_size = parallel.num_data_shards()
    fresh = data.iterate_batches(arrays, batch_size, seed=1, num_steps=20)
    resumed = data.iterate_batches(arrays, batch_size, seed=1, start_step=13, num_steps=7)
    chex.assert_trees_all_equal(list(itertools.islice(fresh, 13, None)), list(resumed))


def test_endless_and_empty_iteration():
    arrays = _toy_arrays(16)
    batch_size = parallel.num_data_shards()
    endless = data.iterate_batches(arrays, batch_size, seed=0)
    assert len(list(itertools.islice(endless, 40))) == 40  # crosses several epochs
    assert list(data.iterate_batches(arrays, batch_size, seed=0, num_steps=0)) == []


def test_iterate_batches_errors_are_raised_at_the_call():
    arrays = _toy_arrays(16)
    cpu_mesh = Mesh(np.asarray(jax.devices("cpu")), (parallel.DATA_AXIS,))
    num_devices = parallel.num_data_shards(cpu_mesh)
    assert num_devices == 8, "conftest.py should simulate 8 CPU devices"
    with pytest.raises(ValueError, match="not a multiple of the 8 devices"):
        data.iterate_batches(arrays, 12, seed=0, mesh=cpu_mesh)
    with pytest.raises(ValueError, match="batch_size = 24 exceeds the 16 examples"):
        data.iterate_batches(arrays, 24, seed=0, mesh=cpu_mesh)
    with pytest.raises(ValueError, match="equal lengths.*'targets': 8"):
        data.iterate_batches({**arrays, "targets": arrays["targets"][:8]}, 8, seed=0,
                             mesh=cpu_mesh)
    with pytest.raises(ValueError, match="non-empty dict"):
        data.iterate_batches({}, 8, seed=0, mesh=cpu_mesh)
    with pytest.raises(ValueError, match="start_step must be non-negative"):
        data.iterate_batches(arrays, 8, seed=0, start_step=-1, mesh=cpu_mesh)
    with pytest.raises(ValueError, match="num_steps must be non-negative"):
        data.iterate_batches(arrays, 8, seed=0, num_steps=-1, mesh=cpu_mesh)


def test_select_classes_relabels_by_position_and_checks_classes(real_data):
    mnist = data.load_dataset("mnist", "test", limit=2000)
    subset = data.select_classes(mnist, (7, 2))
    assert subset.num_classes == 2 and subset.class_names == ("7", "2")
    np.testing.assert_array_equal(np.sort(np.unique(subset.labels)), [0, 1])
    assert np.sum(subset.labels == 0) == np.sum(mnist.labels == 7)
    np.testing.assert_array_equal(subset.images[subset.labels == 1],
                                  mnist.images[mnist.labels == 2])
    for classes, message in (((1, 1), "more than once"), ((3, 10), "not classes"),
                             ((), "is empty")):
        with pytest.raises(ValueError, match=message):
            data.select_classes(mnist, classes)
