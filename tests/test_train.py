"""Training: supervised runs learn real MNIST, save a model with its card and resume exactly;
`fit` runs any multi-model step function, donated and resumable; bad configs are refused
before anything is written."""

import gc
import json
import os
import subprocess
import sys
import textwrap

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxinv import data, experiment_configs, losses, models, saved_model, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHER_CONFIG = os.path.join(REPO, "experiments", "configs", "teacher.py")
# teacher.py:smoke cut to 40 steps (~83 % on the MNIST test set), checkpointed every 10.
SHORT_STEPS = 40


def smoke_config(**overrides) -> ml_collections.ConfigDict:
    config = experiment_configs.load_config(f"{TEACHER_CONFIG}:smoke")
    config.num_steps, config.checkpoint_every = SHORT_STEPS, 10
    for key, value in overrides.items():
        config[key] = value
    return config


class Interrupt(Exception):
    pass


def interrupt_at(at_step: int):
    def callback(step, _):
        if step == at_step:
            raise Interrupt

    return callback


@pytest.fixture(scope="module")
def short_run(session_data_dir, tmp_path_factory):
    """One uninterrupted train_and_evaluate of `smoke_config()`: (workdir, results)."""
    workdir = str(tmp_path_factory.mktemp("short_run"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXINV_DATA_DIR", session_data_dir)
        results = train.train_and_evaluate(smoke_config(), workdir)
    return workdir, results


# ----------------------------------------------------------------------------- train_and_evaluate


def test_short_run_learns_real_mnist_and_saves_its_model(short_run, data_dir, monkeypatch):
    workdir, results = short_run
    # 40 steps on 2048 images: chance is 10 %; a LeNet-5 that learns is far above it.
    assert results["test_accuracy"] > 60.0 and not results["resumed"]
    assert results["num_steps"] == SHORT_STEPS and results["image_shape"] == [32, 32, 1]
    for name in ("config.json", "metrics.jsonl", "results.json", "checkpoints", "model"):
        assert os.path.exists(os.path.join(workdir, name)), name
    losses_logged = [json.loads(line)["loss"]
                     for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert len(losses_logged) == SHORT_STEPS // 10 and losses_logged[-1] < losses_logged[0]
    assert saved_model.is_saved_model(workdir)
    module, variables, card = saved_model.load_model(workdir)
    assert card == saved_model.ModelCard(model="lenet5", num_classes=10, image_shape=(32, 32, 1),
                                         dataset="mnist", image_size=32)
    assert isinstance(module, type(models.get_model("lenet5")))
    # The saved variables are the trained ones: they score exactly what the run reported.
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    test = data.load_dataset("mnist", "test")
    metrics = train.evaluate(module, variables, test.images, test.labels)
    assert metrics["accuracy"] == results["test_accuracy"]
    assert metrics["loss"] == pytest.approx(results["test_loss"], rel=1e-6)
    # A finished run is final: rerunning its command reports it without training again.
    again = train.train_and_evaluate(smoke_config(), workdir)
    assert again["resumed"] and again["test_accuracy"] == results["test_accuracy"]


def test_interrupted_run_resumes_to_identical_variables(short_run, tmp_path, data_dir,
                                                        monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    workdir = str(tmp_path / "interrupted")
    with pytest.raises(Interrupt):
        train.train_and_evaluate(smoke_config(), workdir, step_callback=interrupt_at(25))
    assert not saved_model.is_saved_model(workdir)  # no model until the run finishes
    resumed = train.train_and_evaluate(smoke_config(), workdir)
    assert resumed["resumed"]
    _, straight_vars, _ = saved_model.load_model(short_run[0])
    _, resumed_vars, _ = saved_model.load_model(workdir)
    chex.assert_trees_all_equal(jax.device_get(straight_vars), jax.device_get(resumed_vars))
    assert resumed["test_accuracy"] == short_run[1]["test_accuracy"]


_ONE_DEVICE_RUN = textwrap.dedent("""
    import sys, jax, numpy as np
    jax.config.update("jax_num_cpu_devices", 1)
    from jaxinv import experiment_configs, saved_model, train
    config = experiment_configs.load_config(sys.argv[1] + ":smoke")
    config.num_steps, config.checkpoint_every = int(sys.argv[2]), 10
    train.train_and_evaluate(config, sys.argv[3])
    _, variables, _ = saved_model.load_model(sys.argv[3])
    np.savez(sys.argv[4], *jax.tree.leaves(jax.device_get(variables)))
    print(jax.device_count())
""")


def test_eight_simulated_devices_match_one(short_run, tmp_path, data_dir):
    out = tmp_path / "params_1.npz"
    proc = subprocess.run(
        [sys.executable, "-c", _ONE_DEVICE_RUN, TEACHER_CONFIG, str(SHORT_STEPS),
         str(tmp_path / "run_1"), str(out)],
        env={**os.environ, "JAXINV_DATA_DIR": data_dir}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "1"
    assert jax.device_count() == 8
    with np.load(out) as f:
        one = [f[k] for k in sorted(f.files, key=lambda k: int(k[4:]))]
    _, eight, _ = saved_model.load_model(short_run[0])
    # The global batch and its gradient are the same; only the order of the cross-device sum
    # differs, so agreement is to float32 rounding (grown over 40 Adam steps), not bit-for-bit.
    for a, b in zip(one, jax.tree.leaves(jax.device_get(eight)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("overrides, error, message", [
    ({"optimizer.learning_rate": -1.0}, ValueError, "learning_rate must be > 0"),
    ({"train_limit": 32}, ValueError,
     "batch_size = 64 exceeds the 32 training examples; use a batch size of at most 32"),
    ({"num_steps": 0}, ValueError, "num_steps must be a whole number ≥ 1, got 0"),
    ({"batch_size": 60}, ValueError, "batch_size = 60 is not a multiple of the 8 devices"),
    ({"model": "lenet9"}, ValueError, "Unknown model 'lenet9'; valid names"),
    ({"dataset": "mnistt"}, ValueError, "Unknown dataset 'mnistt'; valid names"),
    ({"image_size": 8}, ValueError, r"LeNet5 cannot take images of shape \(8, 8, 1\).*image_size"),
    ({"augment.zoom": 0.1}, ValueError, "unknown augmentation keys"),
])
def test_bad_config_is_refused_before_the_workdir_exists(tmp_path, data_dir, monkeypatch,
                                                         overrides, error, message):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    config = smoke_config()
    for key, value in overrides.items():
        block, _, leaf = key.rpartition(".")
        with config.unlocked():
            (config[block] if block else config)[leaf] = value
    with pytest.raises(error, match=message):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_missing_data_is_refused_before_the_workdir_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="(?s)nowhere.*set JAXINV_DATA_DIR"):
        train.train_and_evaluate(smoke_config(), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_workdir_of_another_model_is_refused(short_run, data_dir, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    workdir = short_run[0]
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    with pytest.raises(ValueError, match="(?s)model: 'lenet5' -> 'lenet5_half'.*fresh --workdir"):
        train.train_and_evaluate(smoke_config(model="lenet5_half"), workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


def test_optimizer_rejects_bad_settings():
    config = smoke_config().optimizer
    config.learning_rate = -1.0
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        train.make_optimizer(config, 10)
    config.learning_rate = 1e-3
    config.schedule = "step"
    with pytest.raises(ValueError, match="Unknown optimizer.schedule 'step'; use 'constant'"):
        train.make_optimizer(config, 10)
    config.schedule = "cosine"
    config.name = "adagrad9"
    with pytest.raises(ValueError, match="Unknown optimizer.name 'adagrad9'; use 'adam'"):
        train.make_optimizer(config, 10)


# ----------------------------------------------------------------------------- fit


class TinyMLP(nn.Module):
    """A user's classifier whose `__call__` takes no `train` argument."""
    hidden: int

    @nn.compact
    def __call__(self, images):
        x = nn.relu(nn.Dense(self.hidden)(images.reshape(images.shape[0], -1)))
        return nn.Dense(10, name="head")(x)


PEERS = {"a": TinyMLP(hidden=32), "b": TinyMLP(hidden=16)}
TX = train.make_optimizer(ml_collections.ConfigDict(dict(
    name="adam", learning_rate=1e-2, schedule="constant")), 1)


def _init_peers(rng):
    rngs = dict(zip(PEERS, jax.random.split(rng, len(PEERS)), strict=True))
    return {name: train.init_model_state(model, TX, rngs[name], (8, 8, 1))
            for name, model in PEERS.items()}


def _mutual_learning_step(models_state, batch, rng, context, step):
    """Deep mutual learning: each model fits the labels and the other's current predictions.

    Both peers are updated in the one step, each against the other's parameters as they were
    at the start of the step; `context` (a jit argument) weighs the peer term.
    """
    del step
    images, labels = batch["images"], batch["labels"]
    logits = {name: jax.lax.stop_gradient(models.apply_fn(model)(
        models_state[name].variables, images)) for name, model in PEERS.items()}
    new_state, measurements = {}, {}
    for (name, model), peer, key in zip(PEERS.items(), ("b", "a"), jax.random.split(rng),
                                        strict=True):
        def loss(own_logits, peer=peer):
            return (losses.cross_entropy(own_logits, labels) + context["peer_weight"]
                    * losses.distillation_loss(own_logits, logits[peer], 1.0, False))

        new_state[name], m = train.gradient_step(model, TX, models_state[name], images, loss,
                                                 key)
        measurements[f"loss_{name}"] = m["loss"]
    measurements["loss"] = measurements["loss_a"] + measurements["loss_b"]
    measurements["agreement"] = jnp.mean(logits["a"].argmax(-1) == logits["b"].argmax(-1))
    return new_state, measurements


FIT_CONFIG = ml_collections.ConfigDict(dict(seed=3, batch_size=64, num_steps=80,
                                            checkpoint_every=20, log_every=10))
CONTEXT = {"peer_weight": jnp.float32(0.5)}


@pytest.fixture(scope="module")
def digits():
    """The real 8x8 digits (sklearn): 1438 training and 359 test images."""
    return data.load_dataset("digits", "train"), data.load_dataset("digits", "test")


def _fit_peers(workdir, train_set, **kwargs):
    return train.fit(_init_peers, _mutual_learning_step,
                     {"images": train_set.images, "labels": train_set.labels},
                     config=FIT_CONFIG, workdir=workdir, context=CONTEXT, **kwargs)


def test_fit_trains_two_models_in_one_donated_step(digits, tmp_path, monkeypatch):
    train_set, test = digits
    real_jit, donated = jax.jit, []

    def spying_jit(fun, **kwargs):
        jitted = real_jit(fun, **kwargs)
        if "donate_argnums" not in kwargs:
            return jitted

        def call(state, *args):
            leaves = jax.tree.leaves(state)
            out = jitted(state, *args)
            donated.append(all(leaf.is_deleted() for leaf in leaves))
            return out

        return call

    monkeypatch.setattr(jax, "jit", spying_jit)
    state = _fit_peers(str(tmp_path), train_set)
    monkeypatch.undo()
    # Every step consumed the state it was given: it was donated, not copied. The exception is
    # the step right after a checkpoint, whose input Orbax may still be copying to the host.
    assert len(donated) == FIT_CONFIG.num_steps
    assert all(donated[step] for step in range(FIT_CONFIG.num_steps)
               if step % FIT_CONFIG.checkpoint_every), donated
    assert int(state.step) == FIT_CONFIG.num_steps and set(state.models) == {"a", "b"}
    accuracies = {}
    for name, model in PEERS.items():
        accuracies[name] = train.evaluate(model, state.models[name].variables, test.images,
                                          test.labels, batch_size=8 * 45)["accuracy"]
    assert min(accuracies.values()) > 85.0, accuracies  # chance is 10 %
    logged = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [m["step"] for m in logged] == list(range(10, 81, 10))
    assert logged[-1]["loss_a"] < logged[0]["loss_a"] and logged[-1]["loss_b"] < \
        logged[0]["loss_b"]
    assert logged[-1]["agreement"] > 0.9  # the peers learn from each other


def test_fit_resumes_two_models_bit_identically(digits, tmp_path):
    train_set, _ = digits
    straight = jax.device_get(_fit_peers(str(tmp_path / "straight"), train_set))
    with pytest.raises(Interrupt):
        _fit_peers(str(tmp_path / "resumed"), train_set, step_callback=interrupt_at(47))
    resumed = jax.device_get(_fit_peers(str(tmp_path / "resumed"), train_set))
    # Steps, both models' parameters and both optimisers' states.
    chex.assert_trees_all_equal(straight, resumed)


# Orbax leaves the coroutines of a failed restore behind; collected here, they are noise.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_fit_refuses_a_checkpoint_of_other_models(digits, tmp_path):
    train_set, _ = digits
    _fit_peers(str(tmp_path), train_set)

    def init_wider(rng):
        return {name: train.init_model_state(TinyMLP(hidden=48), TX, rng, (8, 8, 1))
                for name in PEERS}

    with pytest.raises(ValueError, match="(?s)does not fit the current run.*fresh --workdir"):
        train.fit(init_wider, _mutual_learning_step,
                  {"images": train_set.images, "labels": train_set.labels}, config=FIT_CONFIG,
                  workdir=str(tmp_path), context=CONTEXT)
    gc.collect()


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": 2048},
     "batch_size = 2048 exceeds the 1438 training examples; use a batch size of at most 1438"),
    ({"num_steps": 0}, "num_steps must be a whole number ≥ 1, got 0"),
    ({"checkpoint_every": -5}, "checkpoint_every must be a whole number ≥ 1"),
])
def test_fit_refuses_bad_sizes_before_the_workdir_exists(digits, tmp_path, overrides, message):
    config = FIT_CONFIG.copy_and_resolve_references()
    config.update(overrides)
    with pytest.raises(ValueError, match=message):
        train.fit(_init_peers, _mutual_learning_step,
                  {"images": digits[0].images, "labels": digits[0].labels}, config=config,
                  workdir=str(tmp_path / "run"), context=CONTEXT)
    assert not (tmp_path / "run").exists()
