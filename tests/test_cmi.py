"""CMI (jaxinv/synthesis/cmi.py) on the real BatchNorm MNIST teacher: its rounds fill the pool
and the feature bank a batch at a time, the head and the student carry over while the
generator is drawn afresh, and it reaches the classes. Determinism, resume and 1 vs 8 devices
are the shared contract's."""

import jax
import numpy as np
import pytest

from jaxinv import synthesis
from jaxinv.synthesis import cmi


def _config(**overrides):
    config = cmi.smoke_config()
    config.update(dict(num_per_class=3, batch_size=10, num_steps=30, latent_dim=32,
                       generator_width=32, learning_rate=1e-2, bank_size=20,
                       num_negatives=16, head_dim=32, student_steps=3))
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def built(mnist_bn_teacher):
    """One CMI method (3 rounds of 10), shared so that its round compiles once."""
    return cmi.build(mnist_bn_teacher, _config())


@pytest.fixture(scope="module")
def straight_run(built, mnist_bn_teacher, tmp_path_factory):
    """`built` synthesised without interruption, a checkpoint after every round: its workdir
    and TransferSet."""
    method, inputs, metadata = built
    workdir = tmp_path_factory.mktemp("cmi_straight")
    transfer_set = synthesis.synthesize(method, mnist_bn_teacher, inputs, metadata=metadata,
                                        seed=0, workdir=str(workdir), checkpoint_every=1)
    return workdir, transfer_set


def test_rounds_fill_pool_and_bank_and_carry_head_and_student(built, mnist_bn_teacher):
    from jaxinv import parallel
    from jaxinv.synthesis import rounds

    method, inputs, metadata = built
    assert method.num_steps == 3 and not method.independent_examples
    state = rounds._init(method, parallel.replicate(inputs), jax.random.key(0))
    assert "generator" not in state  # drawn afresh inside every round
    # Host copies: a round donates the state it is given.
    heads, students = [jax.device_get(state["head"])], [jax.device_get(state["student"].params)]
    for index in range(3):
        earlier = np.asarray(state["pool"])
        state, metrics = rounds._run_round(method, parallel.replicate(mnist_bn_teacher.variables),
                                           state, jax.random.key(index + 1))
        assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["student_loss"])
        filled = 10 * (index + 1)
        pool = np.asarray(state["pool"])
        np.testing.assert_array_equal(pool[:filled - 10], earlier[:filled - 10])
        assert not np.any(pool[filled:])
        assert int(state["bank_count"]) == filled
        # The bank is a ring of 20 features: the third batch overwrites the first.
        written = (np.arange(filled - 10, filled)) % 20
        assert np.all(np.abs(np.asarray(state["bank"])[written]).sum(-1) > 0)
        heads.append(jax.device_get(state["head"]))
        students.append(jax.device_get(state["student"].params))
    for trees in (heads, students):
        changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), trees[0], trees[-1])
        assert all(jax.tree.leaves(changed))


def test_a_short_run_reaches_the_classes(built, straight_run):
    agreement = np.mean(straight_run[1].logits.argmax(-1) == built[2]["class"])
    print(f"CMI agreement {agreement:.2f}")
    assert agreement > 0.3  # chance: 0.1


def test_without_the_generator_the_pixels_reach_the_classes(mnist_bn_teacher, tmp_path):
    method, inputs, metadata = cmi.build(mnist_bn_teacher, _config(generator=False))
    transfer_set = synthesis.synthesize(method, mnist_bn_teacher, inputs, metadata=metadata,
                                        seed=0, workdir=str(tmp_path), checkpoint_every=3)
    agreement = np.mean(transfer_set.logits.argmax(-1) == metadata["class"])
    print(f"CMI without generator: agreement {agreement:.2f}")
    assert agreement > 0.3  # chance: 0.1


@pytest.mark.parametrize("spec", ["cmi.py:mnist", "cmi.py:fashion_mnist_no_contrastive",
                                  "cmi.py:mnist_no_adv", "cmi.py:mnist_no_generator",
                                  "bn_impressions.py:mnist", "bn_impressions.py:fashion_mnist",
                                  "deepinversion.py:mnist_adi", "cmi.py:cifar10",
                                  "bn_impressions.py:cifar10", "deepinversion.py:cifar10_adi"])
def test_the_comparison_configs_are_valid_and_share_one_budget(spec, smoke_config_of):
    from jaxinv import pipeline

    config = smoke_config_of(spec)
    pipeline.check_config(config)
    reference = smoke_config_of(f"deepinversion.py:{config.dataset}")
    assert config.synthesis.num_per_class == reference.synthesis.num_per_class
    assert config.distill.to_dict() | {"references": ()} == (
        reference.distill.to_dict() | {"references": ()})
    if config.synthesis.method == "cmi":
        removed = {"no_contrastive": "contrastive", "no_adv": "adv"}
        for suffix, weight in removed.items():
            assert (config.synthesis.weights[weight] == 0.0) == spec.endswith(suffix)
        assert config.synthesis.generator == (not spec.endswith("no_generator"))


@pytest.mark.parametrize("override, message", [
    (dict(bank_size=5), "smaller than one batch"),
    (dict(weights={"bn": 1.0, "cls": 1.0, "adv": -0.5, "contrastive": 0.8}),
     "weights must be ≥ 0"),
    (dict(batch_size=7), "not a whole number of batches"),
    (dict(temperature=0.0), "temperature must be > 0"),
])
def test_bad_settings_are_refused_with_what_to_do(override, message):
    config = _config()
    config.update(override)
    with pytest.raises(ValueError, match=message):
        synthesis.check_config(config, (32, 32, 1), 10)


def test_a_teacher_without_batchnorm_is_refused(mnist_teacher, tmp_path):
    with pytest.raises(ValueError, match="Data Impressions, CAKE or DfM"):
        synthesis.synthesize_from_config(mnist_teacher, _config(), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_smoke_config_runs_end_to_end(mnist_bn_teacher, teacher_store, session_data_dir,
                                      smoke_config_of, monkeypatch, tmp_path):
    from jaxinv import pipeline

    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    results = pipeline.run(smoke_config_of("cmi.py:smoke"), str(tmp_path / "run"))
    assert results["method"] == "cmi" and results["num_transfer_images"] == 40
    assert results["teacher_target_agreement"] > 0.2  # chance: 0.1
    assert 0.0 <= results["distill"]["student_test_accuracy"] <= 100.0


class _Interrupt(Exception):
    pass


def test_killed_between_rounds_resumes_with_a_bit_identical_bank_head_and_student(
        built, straight_run, mnist_bn_teacher, tmp_path, monkeypatch):
    """Stopped right after the first round's checkpoint, a rerun ends with exactly the state
    (pool, bank, head, student and their optimiser states) of an uninterrupted run."""
    from jaxinv import checkpoint, parallel
    from jaxinv.synthesis import rounds

    method, inputs, metadata = built

    def run(workdir):
        synthesis.synthesize(method, mnist_bn_teacher, inputs, metadata=metadata, seed=0,
                             workdir=str(workdir), checkpoint_every=1)

    original_save = checkpoint.Checkpoints.save

    def save_then_stop(self, step, state, meta=None):
        original_save(self, step, state, meta)
        self.wait()
        raise _Interrupt

    monkeypatch.setattr(checkpoint.Checkpoints, "save", save_then_stop)
    with pytest.raises(_Interrupt):
        run(tmp_path / "killed")
    monkeypatch.setattr(checkpoint.Checkpoints, "save", original_save)
    run(tmp_path / "killed")

    like = rounds._init(method, parallel.replicate(inputs), jax.random.key(0))
    finals = []
    for where in (straight_run[0], tmp_path / "killed"):
        with checkpoint.Checkpoints(str(where / "state")) as ckpts:
            assert ckpts.latest_step() == method.num_steps
            finals.append(ckpts.restore(method.num_steps, like)[0])
    for key in ("pool", "bank", "head", "head_opt", "student"):
        jax.tree.map(np.testing.assert_array_equal, finals[0][key], finals[1][key])
