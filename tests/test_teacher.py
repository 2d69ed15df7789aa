"""The frozen teacher view: head weights, penultimate features and BatchNorm statistics, with
clear errors when the model lacks the layer a method needs; any flax module wrapped as a
teacher; trained models saved and loaded exactly, with clear errors for missing or damaged
ones."""

import functools
import gc
import glob
import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxinv import data, models, pipeline, saved_model, train
from jaxinv.synthesis import impressions
from jaxinv.tasks import distill
from jaxinv.teacher import Teacher, TeacherLayerError, from_module, load_teacher


@pytest.fixture
def make_teacher(random_variables):
    def make(model: nn.Module, image_shape=(32, 32, 1)) -> Teacher:
        return Teacher(model=model, variables=random_variables(model, image_shape),
                       image_shape=image_shape)

    return make


def _images(n: int = 8, shape=(32, 32, 1)) -> np.ndarray:
    return np.random.default_rng(1).random((n, *shape), np.float32)


class HeadlessNet(nn.Module):
    """A user's model: no `train` argument, and its final dense layer is `out`, not `head`."""

    @nn.compact
    def __call__(self, images):
        x = nn.relu(nn.Dense(16, name="hidden")(images.reshape(images.shape[0], -1)))
        return nn.Dense(10, name="out")(x)


class UserMLP(nn.Module):
    """A user's classifier without a `train` argument (no BatchNorm, no dropout)."""
    hidden: int = 64

    @nn.compact
    def __call__(self, images):
        x = nn.relu(nn.Dense(self.hidden)(images.reshape(images.shape[0], -1)))
        return nn.Dense(10, name="head")(x)


class TinyBNNet(nn.Module):
    """conv(4) -> BN -> relu -> conv(6) -> BN -> mean -> head: BN inputs of 4 and 6 channels."""

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = nn.Conv(4, (3, 3), name="conv1")(images)
        self.sow("intermediates", "bn1_input", x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn1")(x))
        x = nn.Conv(6, (3, 3), name="conv2")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn2")(x))
        x = x.mean(axis=(1, 2))
        self.sow("intermediates", "features", x)
        return nn.Dense(10, name="head")(x)


def test_head_of_lenet_is_its_final_dense_layer(make_teacher):
    """head() returns the (D, K) kernel and (K,) bias that produce the logits from features."""
    teacher = make_teacher(models.get_model("lenet5"))
    kernel, bias = teacher.head()
    chex.assert_shape(kernel, (84, 10))
    chex.assert_shape(bias, (10,))
    features, logits = jax.jit(lambda x: (teacher.features(x), teacher.logits(x)))(_images())
    chex.assert_trees_all_close(features @ kernel + bias, logits, atol=1e-5)


def test_model_without_head_layer_raises_clear_error(random_variables):
    """Data Impressions need the final layer's weights; a model without `head` says which
    method asks and how to name the layer; head_name="out" then finds it."""
    variables = random_variables(HeadlessNet(), (32, 32, 1))
    teacher = from_module(HeadlessNet(), variables, (32, 32, 1))
    with pytest.raises(TeacherLayerError, match="CAKE reads the teacher's final linear layer, "
                                                "but HeadlessNet has no layer named 'head'.*"
                                                "Pass head_name=<the name of its final nn.Dense"):
        teacher.head(needed_by="CAKE")
    assert issubclass(TeacherLayerError, ValueError)
    # The method that asks names itself.
    block = ml_collections.ConfigDict(dict(kind="dirichlet", seed=0, betas=(1.0,),
                                           num_per_class=2, floor=1e-3))
    with pytest.raises(TeacherLayerError, match="^Data Impressions reads .* head_name="):
        impressions.impression_targets(teacher, block)
    with pytest.raises(TeacherLayerError, match="HeadlessNet exposes no penultimate features"):
        teacher.features(_images())

    named = from_module(HeadlessNet(), variables, (32, 32, 1), head_name="out")
    kernel, bias = named.head(needed_by="CAKE")
    chex.assert_trees_all_equal((kernel, bias), (variables["params"]["out"]["kernel"],
                                                 variables["params"]["out"]["bias"]))
    hidden = variables["params"]["hidden"]
    images = _images()
    features = jax.nn.relu(images.reshape(8, -1) @ hidden["kernel"] + hidden["bias"])
    chex.assert_trees_all_close(features @ kernel + bias, jax.jit(named.logits)(images),
                                atol=1e-5)
    _, classes, _ = impressions.impression_targets(named, block)
    assert sorted(classes.tolist()) == sorted(list(range(10)) * 2)


def test_batchnorm_statistics_without_batchnorm_raises(make_teacher):
    """LeNet-5 has no BatchNorm: BN-matching methods get a clear refusal, not empty stats."""
    with pytest.raises(TeacherLayerError, match="LeNet5 has no BatchNorm layers"):
        make_teacher(models.get_model("lenet5")).batchnorm_statistics(_images())


def test_batchnorm_statistics_are_the_inputs_moments_and_running_stats(make_teacher):
    """Per BN layer, in call order: the batch mean/var of its input over N, H, W and the
    layer's running mean/var."""
    teacher = make_teacher(TinyBNNet(), (8, 8, 3))
    running = {"mean": jnp.linspace(-1.0, 1.0, 4), "var": jnp.linspace(0.5, 2.0, 4)}
    variables = {**teacher.variables,
                 "batch_stats": {**teacher.variables["batch_stats"], "bn1": running}}
    images = _images(8, (8, 8, 3))
    logits, stats = jax.jit(teacher.batchnorm_statistics)(images, variables)
    chex.assert_trees_all_close(logits, teacher.logits(images, variables), atol=1e-5)
    assert [s["mean"].shape for s in stats] == [(4,), (6,)]
    assert [s["running_var"].shape for s in stats] == [(4,), (6,)]
    _, state = jax.jit(functools.partial(teacher.model.apply, mutable=["intermediates"]))(
        variables, images)
    bn1_input = state["intermediates"]["bn1_input"][0]
    chex.assert_trees_all_close(stats[0]["mean"], bn1_input.mean((0, 1, 2)), atol=1e-6)
    chex.assert_trees_all_close(stats[0]["var"], bn1_input.var((0, 1, 2)), atol=1e-6)
    chex.assert_trees_all_close(stats[0]["example_mean"], bn1_input.mean((1, 2)), atol=1e-6)
    chex.assert_trees_all_close(stats[0]["running_mean"], running["mean"])
    chex.assert_trees_all_close(stats[0]["running_var"], running["var"])
    # Stored variables are used when none are passed (fresh running stats: zeros and ones).
    _, stored = jax.jit(teacher.batchnorm_statistics)(images)
    np.testing.assert_array_equal(stored[1]["running_var"], np.ones(6))


def test_batchnorm_statistics_of_resnet32_cover_every_layer(make_teacher):
    """On ResNet-32 (traced only, via eval_shape) there is one entry per BatchNorm layer, with
    that layer's channel count (16, 32 or 64)."""
    model = models.get_model("resnet32")
    abstract = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0),
                                                            (32, 32, 3)))
    teacher = Teacher(model=model, variables=abstract, image_shape=(32, 32, 3))
    _, stats = jax.eval_shape(teacher.batchnorm_statistics,
                              jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.float32), abstract)
    num_bn_layers = sum(1 for path, _ in jax.tree_util.tree_leaves_with_path(
        abstract["batch_stats"]) if path[-1].key == "mean")
    assert len(stats) == num_bn_layers >= 31
    channels = [s["mean"].shape[0] for s in stats]
    assert set(channels) == {16, 32, 64} and channels[0] == 16 and channels[-1] == 64
    for s in stats:
        assert s["var"].shape == s["running_mean"].shape == s["running_var"].shape == \
            s["mean"].shape


def test_features_match_head_input_dimension(make_teacher):
    """features() is (N, D) with D the head kernel's input dimension, for LeNet and a BN net."""
    for teacher, shape in ((make_teacher(models.get_model("lenet5_half")), (32, 32, 1)),
                           (make_teacher(TinyBNNet(), (8, 8, 3)), (8, 8, 3))):
        features = jax.jit(teacher.features)(_images(8, shape))
        chex.assert_shape(features, (8, teacher.head()[0].shape[0]))
        assert teacher.num_classes == 10


# ----------------------------------------------------------------------------- any flax module


def test_from_module_wraps_a_module_without_train_argument(random_variables):
    """A user's module whose `__call__` has no `train` argument, with params only."""
    model = UserMLP()
    params = {"params": random_variables(model, (32, 32, 1))["params"]}
    teacher = from_module(model, params, (32, 32, 1))
    images = _images()
    chex.assert_trees_all_close(jax.jit(teacher.logits)(images), model.apply(params, images))
    assert teacher.num_classes == 10 and teacher.dataset == ""
    assert teacher.variables["batch_stats"] == {}
    chex.assert_shape(teacher.head()[0], (64, 10))
    with pytest.raises(TeacherLayerError, match="UserMLP has no BatchNorm layers"):
        teacher.batchnorm_statistics(images)


def test_module_without_train_argument_distils_from_the_mnist_teacher(mnist_teacher, data_dir,
                                                                      monkeypatch, tmp_path):
    """The same kind of user module as a student: `distill` with only a few settings given
    (the rest are `default_config`'s), on real MNIST images, beats chance widely."""
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    images = data.load_dataset("mnist", "train", limit=2048).images
    module, variables = distill.distill(
        UserMLP(), mnist_teacher, images, workdir=str(tmp_path),
        config={"num_steps": 100, "batch_size": 64, "checkpoint_every": 100, "log_every": 50})
    assert isinstance(module, UserMLP)
    test = data.load_dataset("mnist", "test")
    accuracy = train.evaluate(module, variables, test.images, test.labels)["accuracy"]
    assert accuracy > 75.0, accuracy  # chance is 10 %; the teacher has ~93 %


class FeatureMap(nn.Module):
    """Returns a feature map, not logits."""

    @nn.compact
    def __call__(self, images):
        return nn.Conv(4, (3, 3))(images)


def test_from_module_refuses_a_module_that_cannot_take_the_images(random_variables):
    lenet = models.get_model("lenet5")
    variables = random_variables(lenet, (32, 32, 1))
    with pytest.raises(ValueError, match=r"The teacher LeNet5 cannot be applied to images of "
                                         r"shape \(8, 8, 1\).*Pass the image_shape it was "
                                         "trained on"):
        from_module(lenet, variables, (8, 8, 1))
    with pytest.raises(ValueError, match=r"FeatureMap returns shape \(1, 8, 8, 4\) for one "
                                         r"image; it must return logits \(N, K\)"):
        from_module(FeatureMap(), random_variables(FeatureMap(), (8, 8, 1)), (8, 8, 1))


# ----------------------------------------------------------------------------- saved models


def test_load_teacher_of_a_trained_run_gives_identical_logits(mnist_teacher, data_dir,
                                                              monkeypatch, smoke_config_of):
    """The session's teacher, loaded again from its `jaxinv train` workdir or its model folder,
    scores exactly the accuracy its run computed from the in-memory variables."""
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    workdir = pipeline.teacher_store_path(
        pipeline.teacher_training_config(smoke_config_of("zskd.py:smoke")))
    results = json.load(open(os.path.join(workdir, "results.json")))
    from_workdir = load_teacher(workdir)
    from_folder = load_teacher(os.path.join(workdir, saved_model.MODEL_DIR))
    assert (from_workdir.dataset, from_workdir.image_shape) == ("mnist", (32, 32, 1))
    assert from_workdir.num_classes == 10
    test = data.load_dataset("mnist", "test")
    metrics = train.evaluate(from_workdir.model, from_workdir.variables, test.images,
                             test.labels)
    assert metrics["accuracy"] == results["test_accuracy"] > 85.0
    images = test.images[:64]
    logits = jax.jit(from_workdir.logits)(images)
    chex.assert_trees_all_equal(logits, jax.jit(from_folder.logits)(images),
                                jax.jit(mnist_teacher.logits)(images))


def _save_random_lenet(directory: str, random_variables) -> dict:
    variables = random_variables(models.get_model("lenet5"), (32, 32, 1), seed=4)
    saved_model.save_model(directory, saved_model.ModelCard(
        model="lenet5", num_classes=10, image_shape=(32, 32, 1), dataset="mnist",
        image_size=32), variables)
    return variables


def test_saved_model_round_trip_is_exact(tmp_path, random_variables):
    variables = _save_random_lenet(str(tmp_path / "model"), random_variables)
    assert saved_model.is_saved_model(str(tmp_path)) and saved_model.is_saved_model(
        str(tmp_path / "model"))
    teacher = load_teacher(str(tmp_path))
    chex.assert_trees_all_equal(jax.device_get(teacher.variables), variables)
    images = _images()
    chex.assert_trees_all_equal(
        jax.jit(teacher.logits)(images),
        jax.jit(models.get_model("lenet5").apply)(variables, images))


def test_missing_saved_model_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="No trained model at .*nothing.*Train one with "
                                                "`jaxinv train <config> --workdir DIR`"):
        load_teacher(str(tmp_path / "nothing"))
    # A run that stopped before saving its model: the message says to rerun it.
    (tmp_path / "unfinished" / "checkpoints").mkdir(parents=True)
    (tmp_path / "unfinished" / "config.json").write_text("{}")
    assert not saved_model.is_saved_model(str(tmp_path / "unfinished"))
    with pytest.raises(FileNotFoundError, match="resumes when its command is rerun"):
        load_teacher(str(tmp_path / "unfinished"))


# Orbax leaves the coroutines of a failed restore behind; collected here, they are noise.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_damaged_saved_model_names_its_folder(tmp_path, random_variables):
    directory = tmp_path / "model"
    _save_random_lenet(str(directory), random_variables)
    files = [p for p in glob.glob(str(directory / "variables" / "**"), recursive=True)
             if os.path.isfile(p)]
    largest = max(files, key=os.path.getsize)  # LeNet-5's weights
    content = open(largest, "rb").read()
    open(largest, "wb").write(content[:len(content) // 2])
    with pytest.raises(ValueError, match=f"variables in {directory}/variables are damaged.*"
                                         f"delete {directory} and rerun"):
        load_teacher(str(tmp_path))

    # Variables that do not fit the card's model, and an unreadable card.
    other = tmp_path / "other"
    _save_random_lenet(str(other), random_variables)
    card = json.load(open(other / saved_model.CARD_FILE))
    json.dump({**card, "model": "lenet5_half"}, open(other / saved_model.CARD_FILE, "w"))
    with pytest.raises(ValueError, match=f"{other}/variables are damaged or do not fit a "
                                         "lenet5_half"):
        load_teacher(str(other))
    (other / saved_model.CARD_FILE).write_text('{"model": "lenet')
    with pytest.raises(ValueError, match=f"{other}/{saved_model.CARD_FILE} is damaged"):
        load_teacher(str(other))
    gc.collect()
