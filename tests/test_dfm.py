"""Data from Model: virtual logits, the l2-PGD extraction on the real MNIST teacher from
Fashion-MNIST backgrounds, the logit-distance loss of DtM, and the chain task (resume, bad
input). Determinism, resume and 1 vs 8 devices of the extraction are the shared contract's."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import data, experiment_configs, losses, pipeline, synthesis
from jaxinv.synthesis import dfm


def test_virtual_logits_follow_section_3():
    logits, classes = dfm.virtual_logits(np.random.default_rng(0), 20000, 10)
    assert logits.shape == (20000, 10) and logits.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(classes), np.full(10, 2000))
    np.testing.assert_array_equal(logits.argmax(-1), classes)
    top = logits[np.arange(20000), classes]
    assert top.mean() == pytest.approx(20.0, abs=0.1) and top.std() == pytest.approx(2.0, abs=0.1)
    # The other nine, sorted per example, have means equally spaced over [-3, 3].
    others = np.sort(np.where(np.eye(10, dtype=bool)[classes], np.inf, logits), axis=-1)[:, :9]
    np.testing.assert_allclose(others.mean(0), np.linspace(-3, 3, 9), atol=0.45)
    # ... in a random order: every class takes the lowest of them about equally often.
    lowest = np.bincount(np.argmin(np.where(np.eye(10, dtype=bool)[classes], np.inf, logits),
                                   axis=-1), minlength=10)
    assert lowest.min() > 1500


def test_extraction_stays_in_the_ball_and_reaches_the_virtual_logits(mnist_teacher, data_dir,
                                                                      monkeypatch, tmp_path):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    config = dfm.smoke_config()
    config.update(dict(num_examples=64, num_steps=30, chunk_size=64, steps_per_call=30))
    method, inputs, metadata = dfm.build(mnist_teacher, config)
    before = np.asarray(mnist_teacher.logits(inputs["background"]))
    transfer_set = synthesis.synthesize(method, mnist_teacher, inputs, metadata=metadata,
                                        seed=0, workdir=str(tmp_path), chunk_size=64)
    images = transfer_set.images
    assert images.min() >= 0.0 and images.max() <= 1.0
    distance = np.linalg.norm((images - inputs["background"]).reshape(64, -1), axis=-1)
    assert distance.max() <= config.epsilon + 1e-4
    target = inputs["targets"]
    gap_before = np.linalg.norm(before - target, axis=-1).mean()
    gap_after = np.linalg.norm(transfer_set.logits - target, axis=-1).mean()
    agreement = np.mean(transfer_set.logits.argmax(-1) == metadata["class"])
    print(f"DfM: logit gap {gap_before:.1f} -> {gap_after:.1f}, top class {agreement:.2f}")
    assert gap_after < 0.85 * gap_before
    assert agreement > 0.8  # chance 0.1; the backgrounds alone are not digits


def test_logit_distance_is_zero_at_a_match_with_a_finite_gradient():
    logits = jnp.array([[1.0, -2.0, 3.0], [0.5, 0.0, 0.0]])
    assert float(losses.logit_distance(logits, logits)) == 0.0
    grad = jax.grad(losses.logit_distance)(logits, logits)
    assert np.all(np.isfinite(grad)) and not np.any(grad)
    shifted = losses.logit_distance(logits, logits + jnp.array([3.0, 4.0, 0.0]))
    assert float(shifted) == pytest.approx(5.0)


@pytest.mark.parametrize("override, message", [
    (lambda c: c.synthesis.update(dict(background="cifar10")), "svhn_gray"),
    (lambda c: c.synthesis.update(dict(epsilon=0.0)), "epsilon"),
    (lambda c: c.synthesis.update(dict(epsilon=-1.0)), "epsilon"),
    (lambda c: c.synthesis.update(dict(num_examples=16, chunk_size=32)), "smaller than one"),
    (lambda c: c.chain.update(dict(length=0)), "chain.length"),
    (lambda c: c.distill.update(dict(loss="mse")), "distill.loss"),
])
def test_bad_input_is_refused_before_anything_is_written(override, message, data_dir,
                                                         monkeypatch, tmp_path):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    config = experiment_configs.load_config("dfm.py:smoke")
    override(config)
    with pytest.raises(ValueError, match=message):
        pipeline.run(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("arg", ["mnist", "mnist_robust", "mnist_paper", "mnist_robust_paper"])
def test_configs_are_valid_and_hold_the_papers_setting(arg):
    config = experiment_configs.load_config(f"dfm.py:{arg}")
    pipeline.check_config(config)
    assert config.synthesis.background == "fashion_mnist" and config.task == "chain"
    assert config.chain.length == 5 and config.chain.attack_steps == 20
    assert config.distill.loss == "logit_l2" and config.distill.student == config.teacher.model
    assert config.synthesis.num_examples == (500000 if arg.endswith("paper") else 30000)
    robust = "robust" in arg
    assert (config.teacher.get("adversarial", {}).get("norm") == "l2") == robust
    assert len(config.paper["chain"]) == 6


@pytest.mark.parametrize("arg", ["vgg8", "vgg8_robust", "vgg8_smoke"])
def test_cifar10_configs_are_valid_and_name_their_backgrounds(arg):
    config = experiment_configs.load_config(f"dfm_cifar10.py:{arg}")
    pipeline.check_config(config)
    smoke = arg.endswith("smoke")
    assert config.synthesis.background == ("cifar10" if smoke else "cifar100")
    assert config.synthesis.background_split == ("test" if smoke else "train")
    assert config.teacher.model == config.distill.student == "vgg8"
    assert config.synthesis.num_examples == (64 if smoke else 500000)
    assert (config.teacher.get("adversarial", {}).get("norm") == "l2") == ("robust" in arg)
    assert len(config.paper["chain"]) == 6


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_a_two_link_chain_resumes_at_the_second_link_with_the_same_final_model(
        mnist_teacher, teacher_store, data_dir, monkeypatch, tmp_path):
    """The smoke chain (two links) end to end; killed while training M2 and rerun, it ends
    with M2's weights exactly as an uninterrupted chain's."""
    from jaxinv.tasks import distill
    from jaxinv.teacher import load_teacher

    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    config = experiment_configs.load_config("dfm.py:smoke")
    straight = pipeline.run(config, str(tmp_path / "straight"))
    links = straight["chain"]["links"]
    assert len(links) == 3 and all("pgd_accuracy" in link for link in links)

    original = distill.distill_and_evaluate

    def interrupted(*args, workdir, **kwargs):
        if "link2" in workdir:
            raise _Interrupt
        return original(*args, workdir=workdir, **kwargs)

    monkeypatch.setattr(distill, "distill_and_evaluate", interrupted)
    with pytest.raises(_Interrupt):
        pipeline.run(config, str(tmp_path / "killed"))
    assert os.path.exists(tmp_path / "killed" / "chain" / "link1" / "results.json")
    monkeypatch.setattr(distill, "distill_and_evaluate", original)
    resumed = pipeline.run(config, str(tmp_path / "killed"))

    def scores(chain):  # everything but the wall times
        return [{k: v for k, v in link.items() if k != "seconds"} for link in chain["links"]]

    assert scores(resumed["chain"]) == scores(straight["chain"])
    assert resumed["chain"]["first_link_seeds"] == straight["chain"]["first_link_seeds"]
    models = [load_teacher(str(tmp_path / name / "chain" / "link2" / "model"))
              for name in ("straight", "killed")]
    jax.tree.map(np.testing.assert_array_equal, models[0].variables, models[1].variables)
    assert data.num_classes("mnist") == models[0].num_classes
