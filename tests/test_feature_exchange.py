"""jaxinv.feature_exchange: SpaceshipNet's channel-wise feature exchange."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.feature_exchange import PARTNERS, exchange_channels, exchange_plan


def encoded(batch, channels, height=2, width=3, dtype=jnp.float32):
    """Features whose value at (i, ..., c) is 1000 i + c: its sample and channel can be read
    back from any value."""
    values = 1000 * np.arange(batch)[:, None, None, None] + np.arange(channels)
    return jnp.asarray(np.broadcast_to(values, (batch, height, width, channels)), dtype)


def sources(mixed):
    """(B, C): the sample each channel of each output sample came from (checking that every
    position of a channel agrees and that channels stay in place)."""
    mixed = np.asarray(mixed, np.int64)
    assert (mixed == mixed[:, :1, :1, :]).all()
    assert (mixed % 1000 == np.arange(mixed.shape[-1])).all()
    return mixed[:, 0, 0, :] // 1000


@pytest.mark.parametrize("partner", PARTNERS)
def test_p_zero_leaves_the_features_unchanged(partner):
    features = encoded(6, 8)
    out = exchange_channels(jax.random.key(0), features, 0.0, partner=partner)
    np.testing.assert_array_equal(out, features)


@pytest.mark.parametrize("partner", PARTNERS)
@pytest.mark.parametrize("channels", [8, 5])
def test_p_one_takes_exactly_half_the_channels_from_one_other_sample(partner, channels):
    batch = 6
    features = encoded(batch, channels)
    for seed in range(5):
        out = exchange_channels(jax.random.key(seed), features, 1.0, partner=partner)
        assert out.shape == features.shape and out.dtype == features.dtype
        source = sources(out)
        for i in range(batch):
            taken = source[i] != i
            assert taken.sum() == channels // 2, (seed, i, source[i])
            assert len(set(source[i][taken])) == 1  # one partner ...
            assert source[i][taken][0] != i         # ... and not itself


def test_reversed_swaps_one_subset_between_i_and_b_minus_1_minus_i():
    batch, channels = 7, 10
    features = encoded(batch, channels)
    source = sources(exchange_channels(jax.random.key(3), features, 1.0, partner="reversed"))
    for i in range(batch):
        j = batch - 1 - i
        if i == j:  # the middle of an odd batch is its own partner: unchanged
            np.testing.assert_array_equal(source[i], i)
            continue
        assert set(source[i]) == {i, j}
        # A true swap: the channels i took from j are the ones j took from i.
        np.testing.assert_array_equal(source[i] == j, source[j] == i)
        assert (source[i] == j).sum() == channels // 2


def test_random_partners_are_other_samples_and_vary():
    partners, take = exchange_plan(jax.random.key(0), 64, 8, 1.0, partner="random")
    partners = np.asarray(partners)
    assert (partners != np.arange(64)).all()
    assert len(set(partners)) > 20  # not a fixed pairing
    np.testing.assert_array_equal(np.asarray(take).sum(1), 4)


def test_the_exchange_depends_on_the_key_and_only_on_it():
    features = encoded(8, 16)
    for partner in PARTNERS:
        run = functools.partial(exchange_channels, features=features, p=1.0, partner=partner)
        np.testing.assert_array_equal(run(jax.random.key(1)), run(jax.random.key(1)))
        assert not np.array_equal(run(jax.random.key(1)), run(jax.random.key(2)))


def test_a_fraction_p_of_samples_is_mixed_per_sample_or_per_batch():
    take = exchange_plan(jax.random.key(0), 2000, 4, 0.7, partner="random")[1]
    assert 0.66 < np.asarray(take).any(1).mean() < 0.74
    batches = [np.asarray(exchange_plan(jax.random.key(k), 16, 4, 0.7, partner="reversed",
                                        per_batch=True)[1]).any(1) for k in range(200)]
    assert all(b.all() or not b.any() for b in batches)  # all mixed or none
    assert 0.6 < np.mean([b.all() for b in batches]) < 0.8


def test_jit_with_a_traced_p_and_other_dtypes_and_shapes():
    run = jax.jit(exchange_channels, static_argnames=("partner", "per_batch"))
    out = run(jax.random.key(0), encoded(4, 6, dtype=jnp.int32), jnp.float32(1.0),
              partner="reversed")
    assert out.dtype == jnp.int32
    assert (sources(out) != np.arange(4)[:, None]).sum(1).tolist() == [3, 3, 3, 3]
    half = jnp.ones((4, 2, 2, 6), jnp.bfloat16)
    assert run(jax.random.key(0), half, 0.5, partner="random").dtype == jnp.bfloat16
    flat = jnp.arange(12).reshape(4, 3)  # (B, C), no spatial axes
    assert exchange_channels(jax.random.key(0), flat, 1.0).shape == (4, 3)
    # One sample has no one to exchange with.
    single = encoded(1, 4)
    np.testing.assert_array_equal(exchange_channels(jax.random.key(0), single, 1.0), single)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_a_probability_outside_0_1_is_refused_with_its_value(p):
    with pytest.raises(ValueError, match=f"got {p!r}"):
        exchange_channels(jax.random.key(0), encoded(4, 4), p)


def test_an_unknown_partner_mode_is_refused():
    with pytest.raises(ValueError, match="partner must be one of"):
        exchange_channels(jax.random.key(0), encoded(4, 4), 0.5, partner="next")
