"""FGSM, iFGSM and PGD (l∞ and l2) on the real MNIST teacher, and their bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import attacks, data, models

NUM_IMAGES = 200


@pytest.fixture(scope="module")
def mnist_batch(session_data_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXINV_DATA_DIR", session_data_dir)
        test = data.load_dataset("mnist", "test", image_size=32)
    return jnp.asarray(test.images[:NUM_IMAGES]), jnp.asarray(test.labels[:NUM_IMAGES])


@pytest.fixture(scope="module")
def attack(mnist_teacher, mnist_batch):
    """`config -> (adversarial images, accuracy %)` against the MNIST teacher."""
    apply = models.apply_fn(mnist_teacher.model)
    images, labels = mnist_batch

    def accuracy(x):
        return float(100 * jnp.mean(apply(mnist_teacher.variables, x).argmax(-1) == labels))

    def attacked(config, targets=None, seed=0):
        adversarial = jax.jit(lambda v, x, y, r, t: attacks.perturb(
            lambda z: apply(v, z), x, y, config, r, targets=t))(
                mnist_teacher.variables, images, labels, jax.random.key(seed), targets)
        return adversarial, accuracy(adversarial)

    attacked.natural = accuracy(images)
    return attacked


@pytest.mark.parametrize("norm", attacks.NORMS)
@pytest.mark.parametrize("name", attacks.ATTACK_NAMES)
def test_adversarial_images_stay_in_the_box_and_the_ball(attack, mnist_batch, name, norm):
    images, _ = mnist_batch
    eps = 0.3 if norm == "linf" else 2.0
    adversarial, accuracy = attack(attacks.attack_config(name, eps, norm=norm))
    delta = np.asarray(adversarial - images).reshape(NUM_IMAGES, -1)
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps + 1e-5
    assert accuracy < attack.natural - 20.0, (name, norm, accuracy, attack.natural)


@pytest.mark.parametrize("name", attacks.ATTACK_NAMES)
def test_eps_zero_leaves_natural_accuracy(attack, mnist_batch, name):
    adversarial, accuracy = attack(attacks.attack_config(name, 0.0))
    np.testing.assert_array_equal(np.asarray(adversarial), np.asarray(mnist_batch[0]))
    assert accuracy == attack.natural


def test_pgd_beats_fgsm_and_more_steps_or_restarts_never_help_the_model(attack):
    eps = 0.15
    fgsm = attack(attacks.attack_config("fgsm", eps))[1]
    pgd = attack(attacks.attack_config("pgd", eps))[1]
    assert pgd <= fgsm and pgd < attack.natural
    # The same trajectory run longer (a fixed step size), then the same with more restarts.
    by_steps = [attack(attacks.attack_config("pgd", eps, num_steps=k, step_size=0.02))[1]
                for k in (1, 3, 10)]
    assert by_steps == sorted(by_steps, reverse=True), by_steps
    by_restarts = [attack(attacks.attack_config("pgd", eps, num_steps=3, step_size=0.02,
                                                restarts=r))[1] for r in (1, 3)]
    assert by_restarts[1] <= by_restarts[0], by_restarts


def test_targeted_attack_reaches_its_target(attack, mnist_teacher, mnist_batch):
    images, labels = mnist_batch
    targets = (labels + 1) % 10
    adversarial, _ = attack(attacks.attack_config("pgd", 0.3), targets=targets)
    predicted = models.apply_fn(mnist_teacher.model)(mnist_teacher.variables,
                                                     adversarial).argmax(-1)
    assert float(jnp.mean(predicted == targets)) > 0.5


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="pgd", eps=-0.1), "eps must be a number ≥ 0"),
    (dict(name="pgd", eps=0.1, step_size=0.0), "step_size must be > 0"),
    (dict(name="pgd", eps=0.1, num_steps=0), "num_steps must be a whole number ≥ 1"),
    (dict(name="pgd", eps=0.1, restarts=0), "restarts must be a whole number ≥ 1"),
    (dict(name="pgd", eps=0.1, norm="l1"), "Unknown attack norm 'l1'"),
    (dict(name="cw", eps=0.1), "Unknown attack 'cw'"),
    (dict(name="pgd", eps=0.1, momentum=0.9), "Unknown attack settings"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        attacks.attack_config(**kwargs)


def test_images_outside_the_unit_box_are_refused():
    images = jnp.full((2, 4, 4, 1), 255.0)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        attacks.perturb(lambda x: x.reshape(2, -1)[:, :3], images, jnp.zeros(2, jnp.int32),
                        attacks.attack_config("fgsm", 0.1), jax.random.key(0))
