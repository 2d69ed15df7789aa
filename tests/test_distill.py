"""Knowledge distillation on Data Impressions: a student that never sees real data learns MNIST;
the KD loss has the τ² scaling and optimum it claims; augmentation re-queries the teacher."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import augment, config_files, data, distill, losses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZSKD_CONFIG = os.path.join(REPO, "experiments", "configs", "zskd.py")


def distill_config(num_steps: int, **augmentation):
    """The smoke ZSKD distillation settings (Adam 2e-3, cosine, τ = 20, batch 64)."""
    config = config_files.load_config(f"{ZSKD_CONFIG}:smoke").distill
    config.num_steps = num_steps
    config.checkpoint_every = num_steps
    # Logging syncs with the host. Hundreds of unsynced steps in flight deadlock XLA:CPU's
    # all-reduce on 8 simulated devices over 2 cores (rendezvous abort after 40 s).
    config.log_every = 25
    config.augment.update(augmentation)
    return config


@pytest.fixture
def mnist_test(data_dir) -> data.Dataset:
    return data.load_dataset("mnist", "test", image_size=32, data_dir=data_dir)


def test_student_distilled_on_impressions_learns_real_mnist(mnist_teacher, mnist_impressions,
                                                            mnist_test, tmp_path):
    """200 KD steps of LeNet-5-half on 160 DIs alone reach far above chance (10 %) on the real
    MNIST test set (ZSKD, Table 1 in miniature)."""
    _, transfer_set = mnist_impressions
    results = distill.distill_and_evaluate(
        "lenet5_half", mnist_teacher, transfer_set.images, mnist_test,
        config=distill_config(200), workdir=str(tmp_path), teacher_logits=transfer_set.logits)
    print(f"ZSKD student on {len(transfer_set)} DIs: {results['test_accuracy']:.2f} %")
    assert results["test_accuracy"] > 50.0
    assert results["num_images"] == 160
    assert (tmp_path / "results.json").exists()


@pytest.mark.parametrize("mixup", [0.0, 1.0])
def test_augmented_distillation_learns_and_requeries_teacher(mnist_teacher, mnist_impressions,
                                                             mnist_test, tmp_path, mixup):
    """With scale/translate/rotate (and mixup) on, each batch is warped (and mixed) and the
    teacher's logits are those of the augmented images; the student still learns (100 steps,
    well above chance)."""
    augmentation = dict(scale=0.1, translate=0.08, rotate_degrees=10.0, mixup=mixup)
    _, transfer_set = mnist_impressions
    batch_fn = distill.kd_batch_fn(mnist_teacher, augment.from_config(augmentation))
    images = transfer_set.images[:8]
    warped, logits = jax.jit(batch_fn)(images, transfer_set.logits[:8], jax.random.key(0),
                                       mnist_teacher.variables)
    assert not np.allclose(warped, images, atol=1e-3)
    chex.assert_trees_all_close(logits, mnist_teacher.logits(warped), atol=1e-4, rtol=1e-4)

    results = distill.distill_and_evaluate(
        "lenet5_half", mnist_teacher, transfer_set.images, mnist_test,
        config=distill_config(100, **augmentation), workdir=str(tmp_path))
    print(f"ZSKD student with augmentation: {results['test_accuracy']:.2f} %")
    assert results["test_accuracy"] > 40.0


def test_distillation_loss_scaling_and_optimum():
    """scale_by_t2 multiplies by exactly τ²; the loss is smallest, with zero gradient, where the
    student's logits equal the teacher's (up to a per-row shift), and the teacher gets no
    gradient."""
    rng = np.random.default_rng(0)
    teacher_logits = jnp.asarray(3.0 * rng.normal(size=(16, 10)), jnp.float32)
    student_logits = jnp.asarray(3.0 * rng.normal(size=(16, 10)), jnp.float32)
    for tau in (1.0, 4.0, 20.0):
        scaled = losses.distillation_loss(student_logits, teacher_logits, tau, scale_by_t2=True)
        plain = losses.distillation_loss(student_logits, teacher_logits, tau, scale_by_t2=False)
        np.testing.assert_allclose(scaled, tau**2 * plain, rtol=1e-6)

    tau = 4.0
    loss_fn = lambda s, t: losses.distillation_loss(s, t, tau)
    at_teacher = loss_fn(teacher_logits, teacher_logits)
    teacher_probs = jax.nn.softmax(teacher_logits / tau)
    entropy = -jnp.sum(teacher_probs * jnp.log(teacher_probs), -1).mean() * tau**2
    np.testing.assert_allclose(at_teacher, entropy, rtol=1e-5)
    shifted = teacher_logits + jnp.arange(16.0)[:, None]
    np.testing.assert_allclose(loss_fn(shifted, teacher_logits), at_teacher, rtol=1e-5)
    grad_student, grad_teacher = jax.grad(loss_fn, argnums=(0, 1))(teacher_logits,
                                                                   teacher_logits)
    np.testing.assert_allclose(grad_student, 0.0, atol=1e-5)
    np.testing.assert_array_equal(grad_teacher, 0.0)
    for seed in range(5):
        noise = jax.random.normal(jax.random.key(seed), teacher_logits.shape)
        assert loss_fn(teacher_logits + 0.5 * noise, teacher_logits) > at_teacher
    assert loss_fn(student_logits, teacher_logits) > at_teacher


def test_transfer_set_of_another_shape_is_refused(mnist_teacher, mnist_test, tmp_path):
    """Images the teacher and student cannot take are refused with a ValueError before any
    training, and nothing is written."""
    images = np.random.default_rng(0).random((64, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match="shape"):
        distill.distill_and_evaluate("lenet5_half", mnist_teacher, images, mnist_test,
                                     config=distill_config(4), workdir=str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()
