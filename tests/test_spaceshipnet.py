"""SpaceshipNet: the generator's decoding, marked stages, a short run on the real BN MNIST
teacher, the synthesis_student task, the drift diagnostic, configs and bad input."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import spaceshipnet_drift
from jaxinv import cam, data, experiment_configs, models, pipeline, synthesis, train
from jaxinv.models.spaceship import SpaceshipGenerator
from jaxinv.synthesis import spaceshipnet
from jaxinv.teacher import TeacherLayerError


def test_the_generator_decodes_from_each_pooled_level_back_to_its_images():
    generator = SpaceshipGenerator((32, 32, 1), width=16)
    z = jax.random.normal(jax.random.key(0), (6, 8))
    variables = generator.init(jax.random.key(1), z)
    (images, features), _ = generator.apply(variables, z, True, mutable=["batch_stats"])
    assert [f.shape for f in features] == [(6, 8, 8, 16), (6, 16, 16, 16), (6, 32, 32, 8)]
    assert images.shape == (6, 32, 32, 1) and 0 <= images.min() and images.max() <= 1
    for level, feature in zip((1, 2, 3), features, strict=True):
        decoded, _ = generator.apply(variables, feature, level, True,
                                     method=SpaceshipGenerator.decode, mutable=["batch_stats"])
        np.testing.assert_allclose(decoded, images, atol=1e-5)


@pytest.mark.parametrize("name, image_shape", [("bn_cnn", (32, 32, 1)), ("wrn16_1", (32, 32, 3)),
                                               ("resnet18", (32, 32, 3)), ("vgg8", (32, 32, 3))])
def test_the_last_stage_cam_averages_to_the_logits_minus_the_bias(name, image_shape):
    model = models.get_model(name)
    variables = models.init_variables(model, jax.random.key(0), image_shape)
    images = jax.random.uniform(jax.random.key(1), (3, *image_shape))
    logits, cams, _ = cam.stage_cams(models.apply_fn(model), variables, images)
    assert len(cams) == 4 and cams[-1].shape[-1] == 10
    bias = variables["params"]["head"]["bias"]
    np.testing.assert_allclose(cams[-1].mean((1, 2)) + bias, logits, atol=1e-4)


def _short_config(**overrides):
    config = spaceshipnet.smoke_config()
    config.update(dict(num_epochs=6, batch_size=40, generator_steps=10, student_steps=40,
                       latent_dim=32, generator_width=32))
    config.update(overrides)
    return config


def test_a_short_run_distils_a_student_well_above_chance(mnist_bn_teacher, session_data_dir,
                                                         tmp_path):
    """Six epochs (about a minute and a half on 2 CPU cores) take the student from chance to
    about 75 % of the real test images (the teacher: about 88 %)."""
    method, inputs, metadata = spaceshipnet.build(mnist_bn_teacher, _short_config())
    transfer_set = synthesis.synthesize(method, mnist_bn_teacher, inputs, metadata=metadata,
                                        seed=0, workdir=str(tmp_path), checkpoint_every=3)
    assert transfer_set.images.shape == (240, 32, 32, 1)
    module, variables = _saved_student(tmp_path)
    test = data.evaluation_subset(data.load_dataset("mnist", "test", data_dir=session_data_dir),
                                  2000)
    accuracy = train.evaluate(module, variables, test.images, test.labels)["accuracy"]
    assert accuracy > 40.0, accuracy


def _saved_student(workdir):
    from jaxinv import saved_model

    module, variables, card = saved_model.load_model(
        os.path.join(workdir, synthesis.MODELS_DIR, "student"))
    assert card.model == "bn_cnn_half"
    return module, variables


def test_a_student_without_marked_stages_is_refused_by_name(mnist_bn_teacher):
    with pytest.raises(TeacherLayerError, match="lenet5_half"):
        spaceshipnet.build(mnist_bn_teacher, _short_config(student="lenet5_half"))
    # Without mSARC any student will do.
    spaceshipnet.build(mnist_bn_teacher, _short_config(
        student="lenet5_half", weights={"cls": 0.5, "bn": 1.0, "kl": 900.0, "msarc": 0.0}))


def test_a_student_with_another_number_of_stages_is_refused(mnist_bn_teacher):
    with pytest.raises(ValueError, match="marks 4 and the student"):
        spaceshipnet.build(mnist_bn_teacher, _short_config(student="resnet8"))


def test_a_teacher_without_batchnorm_is_refused(mnist_teacher):
    with pytest.raises(TeacherLayerError, match="BatchNorm"):
        spaceshipnet.build(mnist_teacher, _short_config())


@pytest.mark.parametrize("override, message", [
    (dict(exchange_probability=1.5), "exchange_probability"),
    (dict(exchange_probability=-0.1), "exchange_probability"),
    (dict(exchange_partner="left"), "exchange_partner"),
    (dict(generator_schedule="step"), "generator_schedule"),
    (dict(kl_reduction="sum"), "kl_reduction"),
    (dict(batch_size=1), "batch_size"),
    (dict(num_epochs=0), "num_epochs"),
    (dict(weights={"cls": 0.5, "bn": 1.0, "kl": -1.0, "msarc": 1.0}), "weights"),
])
def test_bad_settings_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        synthesis.check_config(_short_config(**override), (32, 32, 1), 10)


@pytest.mark.parametrize("arg", ["mnist", "fashion_mnist", "cifar10", "mnist_no_cfe",
                                 "mnist_no_msarc", "mnist_code", "cifar10_paper",
                                 "cifar100_paper"])
def test_configs_are_valid_and_share_the_comparisons_budget(arg):
    config = experiment_configs.load_config(f"spaceshipnet.py:{arg}")
    pipeline.check_config(config)
    block = config.synthesis
    assert config.task == "synthesis_student"
    if arg.endswith("_paper"):
        assert (block.num_epochs, block.student_steps, block.batch_size) == (200, 2000, 256)
        assert config.teacher.model == "resnet34" and block.student == "resnet18"
        return
    dataset = arg.split("_no_")[0].removesuffix("_code")
    base = experiment_configs.load_config(f"deepinversion.py:{dataset}")
    assert block.num_epochs * block.batch_size == base.synthesis.num_per_class * 10
    assert block.num_epochs * block.student_steps == base.distill.num_steps
    assert block.student == base.distill.student
    assert (block.exchange_probability == 0.0) == arg.endswith("_no_cfe")
    assert (block.weights.msarc == 0.0) == arg.endswith("_no_msarc")
    assert (block.generator_schedule == "restart") == arg.endswith("_code")


def test_the_pool_kd_variant_synthesises_as_mnist_and_distils_as_deepinversion():
    config = experiment_configs.load_config("spaceshipnet.py:mnist_pool_kd")
    pipeline.check_config(config)
    assert config.task == "distill"
    # The same synthesis as spaceshipnet.py:mnist, so a copy of its synthesis/ is reused.
    assert config.synthesis == experiment_configs.load_config("spaceshipnet.py:mnist").synthesis
    assert config.distill == experiment_configs.load_config("deepinversion.py:mnist").distill


@pytest.mark.parametrize("images", [50, 250, 500, 1000, 2500])
def test_table_e_configs_fix_the_students_steps_and_match_the_real_images(images, data_dir,
                                                                         monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    config = experiment_configs.load_config(f"spaceshipnet.py:cifar10_images_{images}")
    pipeline.check_config(config)
    block = config.synthesis
    assert block.num_epochs * block.batch_size == images
    assert block.num_epochs * block.student_steps == 2000
    assert config.synthesis_student.real_images == images
    assert config.synthesis_student.real_distill.num_steps == 2000
    # The supplement's figures for this size reach results.json (pipeline: same dataset).
    assert config.paper.dataset == config.dataset
    assert config.paper.student > config.paper.real_images_student


@pytest.mark.parametrize("override, message", [
    (dict(real_images=-1), "real_images"),
    (dict(real_images=10), "real_distill block"),
    (dict(real_images=10, real_distill=dict(student="no_such_model")), "no_such_model"),
    (dict(real_images=10, real_distill=dict(epochs=3)), "no setting 'epochs'"),
    (dict(real_images=10**6, real_distill=dict()), "holds 60000 images"),
    (dict(real_images=10, real_distill=dict(batch_size=16)), "batch_size = 16 exceeds the 10"),
])
def test_a_bad_real_data_column_is_refused(override, message, data_dir, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    config = experiment_configs.load_config("spaceshipnet.py:smoke")
    config.synthesis_student.update(override)
    with pytest.raises(ValueError, match=message):
        pipeline.check_config(config)


def test_the_synthesis_student_task_refuses_a_method_that_trains_none():
    config = experiment_configs.load_config("spaceshipnet.py:smoke")
    config.synthesis = synthesis.get_method_module("impressions").smoke_config()
    with pytest.raises(ValueError, match="trains none"):
        pipeline.check_config(config)


@pytest.mark.slow
def test_smoke_config_runs_end_to_end_and_its_drift_is_measured(
        mnist_bn_teacher, teacher_store, session_data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    config = experiment_configs.load_config("spaceshipnet.py:smoke")
    # Table E's real-data column: KD on 200 real training images.
    config.synthesis_student.real_images = 200
    config.synthesis_student.real_distill = dict(student="bn_cnn_half", num_steps=150,
                                                 batch_size=40, temperature=20.0)
    results = pipeline.run(config, str(tmp_path / "run"))
    task = results["synthesis_student"]
    assert 0.0 <= task["student_test_accuracy"] <= 100.0
    assert 0.0 <= task["cam_difference"]["mae"] <= 255.0
    assert task["cam_difference"]["num_images"] == 200
    assert task["real_images_student"]["num_images"] == 200
    assert task["real_images_student"]["test_accuracy"] > 50.0  # chance is 10
    assert os.path.exists(tmp_path / "run" / "synthesis" / synthesis.MODELS_DIR / "student")
    drift = spaceshipnet_drift.drift(str(tmp_path / "run"))
    # The generator is the same when the last epoch is pooled as at the end, and nothing comes
    # after F3 but a convolution: those decodes are the pooled images themselves.
    assert drift["decodes"]["f3"]["kept_last"] == 100.0
    assert drift["student_test_accuracy"] == task["student_test_accuracy"]
    values = [drift["student_agreement"], *drift["pool_agreement"].values(),
              *(v for level in drift["decodes"].values() for v in level.values())]
    assert all(0.0 <= v <= 100.0 for v in values)


def test_msarc_is_zero_for_a_student_that_is_the_teacher(mnist_bn_teacher):
    images = jax.random.uniform(jax.random.key(0), (4, 32, 32, 1))
    apply = models.apply_fn(mnist_bn_teacher.model)
    logits, teacher_cams, _ = cam.stage_cams(apply, mnist_bn_teacher.variables, images)
    _, same_cams, _ = cam.stage_cams(apply, mnist_bn_teacher.variables, images,
                                     classes=jnp.argmax(logits, -1))
    assert float(cam.msarc_loss(teacher_cams, same_cams)) == 0.0
