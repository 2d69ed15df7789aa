"""CMI's generator and projection head (jaxinv/models/cmi.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.models.cmi import CMIGenerator, ProjectionHead, init_generator


@pytest.mark.parametrize("image_shape", [(32, 32, 1), (32, 32, 3), (8, 8, 1)])
def test_generator_makes_images_of_the_shape_in_the_unit_box(image_shape):
    generator = CMIGenerator(image_shape, width=16)
    variables = init_generator(generator, jax.random.key(0), 8)
    images, _ = generator.apply(variables, jax.random.normal(jax.random.key(1), (4, 8)),
                                mutable=["batch_stats"])
    assert images.shape == (4, *image_shape)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    # Different codes give different images, through a batch-normalised generator.
    assert float(jnp.abs(images[0] - images[1]).max()) > 0


def test_generator_initialisation_is_the_references():
    """Weights N(0, 0.02), BatchNorm scales N(1, 0.02), biases 0; a new key, new weights."""
    generator = CMIGenerator((32, 32, 1))
    params = init_generator(generator, jax.random.key(0), 256)["params"]
    kernel = np.asarray(params["conv1"]["kernel"])
    assert abs(kernel.mean()) < 1e-3 and abs(kernel.std() - 0.02) < 1e-3
    scale = np.asarray(params["bn1"]["scale"])
    assert abs(scale.mean() - 1.0) < 5e-3 and abs(scale.std() - 0.02) < 5e-3
    assert not np.any(np.asarray(params["conv1"]["bias"]))
    other = init_generator(generator, jax.random.key(1), 256)["params"]
    assert not np.array_equal(np.asarray(other["conv1"]["kernel"]), kernel)


def test_projection_head_maps_features_to_embeddings():
    head = ProjectionHead(out_dim=32)
    features = jnp.ones((5, 12))
    variables = head.init(jax.random.key(0), features)
    assert head.apply(variables, features).shape == (5, 32)
    assert variables["params"]["hidden"]["kernel"].shape == (12, 12)
