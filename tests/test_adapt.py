"""ADDA domain adaptation (tasks/adapt.py) on real USPS and MNIST."""

import inspect
import os

import chex
import jax
import ml_collections
import numpy as np
import pytest
from tfds_mock import mocked_tfds

from jaxinv import data, models, pipeline, saved_model, synthesis, train
from jaxinv.synthesis import impressions
from jaxinv.tasks import adapt
from jaxinv.teacher import load_teacher


@pytest.fixture(autouse=True)
def _real_data(data_dir, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)


def _adapt_block(**overrides) -> ml_collections.ConfigDict:
    block = dict(batch_size=64, num_steps=40, checkpoint_every=20, log_every=10, seed=0,
                 discriminator_input="logits",
                 optimizer=dict(name="adam", learning_rate=2e-4, b1=0.5, schedule="constant"))
    return ml_collections.ConfigDict({**block, **overrides})


@pytest.fixture(scope="module")
def usps_source(session_data_dir, smoke_config_of, tmp_path_factory):
    """The ADDA LeNet trained on 1,800 sampled USPS images at 28x28 (600 steps), as the
    `adapt.py:usps_mnist` config trains it, and those images."""
    config = smoke_config_of("adapt.py:usps_mnist")
    config.teacher.num_steps = 600
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXINV_DATA_DIR", session_data_dir)
        training_config = pipeline.teacher_training_config(config)
        workdir = str(tmp_path_factory.mktemp("usps_source"))
        train.train_and_evaluate(training_config, workdir)
        images = adapt._real_source_images(config)
    return load_teacher(workdir), images


def _accuracy(teacher, variables, dataset):
    return train.evaluate(teacher.model, variables, dataset.images, dataset.labels)["accuracy"]


def test_both_domains_get_the_same_preprocessing(smoke_config_of):
    """A PyTorch ADDA port fed USPS in [0, 255] and MNIST in [0, 1]; ours must not."""
    config = smoke_config_of("adapt.py:usps_mnist")
    source, target = adapt._real_source_images(config), adapt._target_train_images(config)
    chex.assert_shape([source, target], [(1800, 28, 28, 1), (2000, 28, 28, 1)])
    chex.assert_type([source, target], [np.float32, np.float32])
    for images in (source, target):
        assert images.min() == 0.0 and 0.95 < images.max() <= 1.0
    # Dark background, bright strokes in both: mean ink within a factor of 3 of each other.
    assert 1 / 3 < source.mean() / target.mean() < 3


def test_adaptation_never_receives_target_labels():
    parameters = inspect.signature(adapt.adapt).parameters
    assert not [name for name in parameters if "label" in name]
    assert list(parameters)[:4] == ["model", "source_variables", "source_images",
                                    "target_images"]


def test_same_domain_adaptation_keeps_the_source_accuracy(usps_source, tmp_path):
    """Real source images on both sides: nothing to align, so accuracy stays within 1 point."""
    teacher, images = usps_source
    test = data.load_dataset("usps", "test", image_size=28)
    before = _accuracy(teacher, teacher.variables, test)
    adapted = adapt.adapt(teacher.model, teacher.variables, images[:900], images[900:],
                          config=_adapt_block(num_steps=100), workdir=str(tmp_path))
    assert before > 85.0
    assert abs(_accuracy(teacher, adapted, test) - before) <= 1.0


@pytest.mark.slow
def test_adda_on_data_impressions_beats_source_only_usps_to_mnist(usps_source, tmp_path):
    teacher, _ = usps_source
    config = ml_collections.ConfigDict(dict(
        method="impressions", kind="dirichlet", betas=(0.01, 0.1), floor=1e-3,
        num_per_class=48, temperature=20.0, num_steps=200, learning_rate=0.05,
        schedule="linear", pixel_l2=0.0, init_resolution=None, chunk_size=480,
        steps_per_call=50, seed=0))
    impressions.check_config(config, teacher.image_shape, teacher.num_classes)
    dis = synthesis.synthesize_from_config(teacher, config, str(tmp_path / "synthesis"))
    mnist = data.load_dataset("mnist", "train", image_size=28)
    target = data.subsample(mnist, 2000, 0).images
    test = data.load_dataset("mnist", "test", image_size=28, limit=3000)
    adapted = adapt.adapt(teacher.model, teacher.variables, dis.images, target,
                          config=_adapt_block(num_steps=400), workdir=str(tmp_path / "adapt"))
    source_only, after = _accuracy(teacher, teacher.variables, test), _accuracy(teacher, adapted,
                                                                                test)
    assert after > source_only + 5.0, (source_only, after)
    print(f"USPS -> MNIST, 3000 test images: source only {source_only:.2f}, ADDA on DIs "
          f"{after:.2f}")


@pytest.mark.parametrize("discriminator_input", adapt.DISCRIMINATOR_INPUTS)
def test_interrupted_adaptation_resumes_to_identical_weights(usps_source, tmp_path,
                                                             discriminator_input):
    teacher, images = usps_source
    source, target = images[:256], images[256:512]
    block = _adapt_block(num_steps=12, checkpoint_every=4, discriminator_input=discriminator_input)
    whole = adapt.adapt(teacher.model, teacher.variables, source, target, config=block,
                        workdir=str(tmp_path / "whole"))

    def interrupt(step, measurements):
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        adapt.adapt(teacher.model, teacher.variables, source, target, config=block,
                    workdir=str(tmp_path / "resumed"), step_callback=interrupt)
    resumed = adapt.adapt(teacher.model, teacher.variables, source, target, config=block,
                          workdir=str(tmp_path / "resumed"))
    chex.assert_trees_all_equal(whole, resumed)
    # The classifier is the source's, untouched; the encoder has moved.
    chex.assert_trees_all_equal(whole["params"]["head"], teacher.variables["params"]["head"])
    assert not np.allclose(whole["params"]["fc3"]["kernel"],
                           teacher.variables["params"]["fc3"]["kernel"])


def test_bad_input_is_refused_with_how_to_fix(usps_source, tmp_path):
    teacher, images = usps_source
    block = _adapt_block()
    with pytest.raises(ValueError, match="Resize both"):
        adapt.adapt(teacher.model, teacher.variables, images[:128],
                    np.zeros((128, 32, 32, 1), np.float32), config=block,
                    workdir=str(tmp_path / "a"))
    with pytest.raises(ValueError, match="fewer than one batch"):
        adapt.adapt(teacher.model, teacher.variables, images[:128], images[:10], config=block,
                    workdir=str(tmp_path / "b"))
    lenet = models.get_model("lenet5")
    variables = models.init_variables(lenet, jax.random.key(0), (32, 32, 1))
    with pytest.raises(ValueError, match="no `encode"):
        adapt.adapt(lenet, variables, np.zeros((128, 32, 32, 1), np.float32),
                    np.zeros((128, 32, 32, 1), np.float32), config=block,
                    workdir=str(tmp_path / "c"))
    assert not any(os.listdir(tmp_path))  # refused before anything was written


@pytest.mark.parametrize("override, message", [
    (lambda c: setattr(c, "dataset", "svhn"), "svhn_gray"),
    (lambda c: setattr(c.teacher, "model", "lenet5"), "encoder/classifier split"),
    (lambda c: setattr(c.adapt, "discriminator_input", "pixels"), "discriminator_input"),
    (lambda c: setattr(c.adapt, "target_sample", 32), "batch_size"),
    (lambda c: setattr(c.adapt, "references", ("source_free",)), "references"),
])
def test_config_errors_come_before_any_write(smoke_config_of, override, message, tmp_path):
    config = smoke_config_of("adapt.py:smoke")
    override(config)
    with pytest.raises(ValueError, match=message):
        pipeline.run(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("arg", ["usps_mnist", "mnist_usps", "svhn_mnist", "usps_mnist_high_beta",
                                 "mnist_usps_paper", "svhn_mnist_smoke"])
def test_every_variant_is_a_valid_pipeline_config(smoke_config_of, arg):
    config = smoke_config_of(f"adapt.py:{arg}")
    pipeline.check_config(config)
    assert config.image_size == 28 and config.adapt.optimizer.b1 == 0.5


def test_seed_reseeds_sampling_synthesis_and_adaptation(smoke_config_of):
    config = smoke_config_of("adapt.py:usps_mnist")
    config.seed = 2
    resolved = config.copy_and_resolve_references()
    assert (resolved.teacher.seed, resolved.synthesis.seed, resolved.adapt.seed) == (2, 2, 2)


@pytest.mark.slow
def test_smoke_config_runs_end_to_end(smoke_config_of, tmp_path):
    results = pipeline.run(smoke_config_of("adapt.py:smoke"), str(tmp_path))
    figures = results["adapt"]
    assert figures["target"] == "mnist" and figures["num_target_test_images"] == 10000
    for key in ("source_only", "adda_data_impressions", "adda_real_source"):
        assert 0.0 <= figures[key] <= 100.0
    assert os.path.exists(figures["tsne_figure"])
    assert saved_model.is_saved_model(str(tmp_path / "adapt" / "data_impressions"))
    assert pipeline.run(smoke_config_of("adapt.py:smoke"), str(tmp_path)) == results


@pytest.mark.slow
def test_svhn_config_runs_on_mock_svhn(smoke_config_of, tmp_path):
    """SVHN is not in shared/data: its config reads tfds svhn_cropped, mocked here."""
    with mocked_tfds(str(tmp_path / "tfds"), "svhn_cropped", num_examples=256):
        results = pipeline.run(smoke_config_of("adapt.py:svhn_mnist_smoke"),
                               str(tmp_path / "run"))
    assert results["dataset"] == "svhn_gray" and results["adapt"]["target"] == "mnist"
    assert 0.0 <= results["adapt"]["adda_data_impressions"] <= 100.0
