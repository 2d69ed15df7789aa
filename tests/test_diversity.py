"""jaxinv.diversity: the layer-wise FID and the pairwise cosine distance of a set."""

import numpy as np
import pytest

from jaxinv import data, diversity
from jaxinv.models.mlp import MLP
from jaxinv.teacher import TeacherLayerError, from_module


def test_frechet_distance_is_zero_for_the_same_set_and_grows_with_a_shift():
    features = np.random.default_rng(0).normal(size=(500, 8))
    assert diversity.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    shifted = diversity.frechet_distance(features, features + 1.0)
    assert shifted == pytest.approx(8.0, rel=1e-6)  # ‖Δμ‖² = 8, the covariances are equal
    assert diversity.frechet_distance(features, features + 2.0) > shifted


def test_pairwise_cosine_distance_of_copies_orthogonal_opposite_and_zero_vectors():
    assert diversity.mean_pairwise_cosine_distance(np.ones((5, 3))) == pytest.approx(0.0)
    # A zero vector is orthogonal to everything: 2 of the 6 ordered pairs have distance 0.
    with_zero = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    assert diversity.mean_pairwise_cosine_distance(with_zero) == pytest.approx(4 / 6)
    assert diversity.mean_pairwise_cosine_distance(np.eye(4)) == pytest.approx(1.0)
    assert diversity.mean_pairwise_cosine_distance(
        np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(2.0)


def test_real_digits_are_nearer_real_digits_than_noise_is(mnist_bn_teacher, data_dir,
                                                          monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    test = data.load_dataset("mnist", "test")
    train = data.subsample(data.load_dataset("mnist", "train"), 1000, seed=0)
    noise = np.random.default_rng(0).uniform(size=train.images.shape).astype(np.float32)
    real = diversity.measure(mnist_bn_teacher, train.images, test.images[:2000])
    fake = diversity.measure(mnist_bn_teacher, noise, test.images[:2000])
    for layer in diversity.LAYERS:
        assert real[f"fid_{layer}"] < fake[f"fid_{layer}"] / 5, (layer, real, fake)
    # Uniform noise looks alike to the teacher; ten classes of digits do not.
    assert real["pairwise_cosine_distance"] > fake["pairwise_cosine_distance"]


def test_a_teacher_without_convolutions_is_refused_with_what_to_do(random_variables):
    model = MLP(num_classes=10)
    teacher = from_module(model, random_variables(model, (32, 32, 1)), (32, 32, 1))
    with pytest.raises(TeacherLayerError, match="fewer than two convolutions"):
        diversity.pooled_features(teacher, np.zeros((4, 32, 32, 1), np.float32))
