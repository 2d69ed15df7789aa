"""Channel-wise feature exchange (CFE): SpaceshipNet's way of making new images from old ones.

SpaceshipNet keeps, for every image its generator made, the generator's intermediate feature
maps (a feature pool). To train the student it draws a batch of pooled maps of one level and,
with probability p = 0.7, replaces half of each sample's channels, chosen at random, by those
of another sample of the batch, then runs the rest of the generator on the mixed maps. The mix
of two images' channels gives an image neither of them is, so the student sees more diverse
inputs than the pool holds. Table D of the supplement finds random positions better than any
fixed half of the channels.

Two ways to choose the partner:

- "reversed" (the authors' code, skgyu/SpaceshipNet): sample i is paired with sample B − 1 − i.
  Here each pair swaps one random subset of C // 2 channels, drawn once for the pair: i takes
  the subset from B − 1 − i and B − 1 − i takes the same subset from i, so the pair trades
  halves and neither channel set is lost ("swapped between sample i and another sample", as
  the supplement says). With an odd B the middle sample is its own partner and is left as it
  is. (The authors' code draws the subset afresh for i and for B − 1 − i, so their pair need
  not trade the same channels.)
- "random" (the supplement's "another sample"): each sample i takes C // 2 random channels
  from a partner drawn uniformly among the other B − 1 samples, with its own subset and its
  own coin. This is a take, not a swap: the partner's own draw is independent, so every sample,
  for any B > 1, gets a partner (a random pairing would leave one sample out when B is odd).

Whether a sample (or pair) is mixed is decided per sample (per pair), with probability p. The
authors' code tosses one coin per batch (all samples mixed or none); `per_batch=True` does so.

References:
  Yu et al., "Data-Free Knowledge Distillation via Feature Exchange and Activation Region
  Constraint" (SpaceshipNet), CVPR 2023, supplement §A.2 and §B.2 (Table D).
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

PARTNERS = ("random", "reversed")


def _check(p, partner: str) -> None:
    if isinstance(p, numbers.Real) and not 0.0 <= p <= 1.0:
        raise ValueError(f"The exchange probability p must lie in [0, 1], got {p!r}.")
    if partner not in PARTNERS:
        raise ValueError(f"partner must be one of {PARTNERS}, got {partner!r}.")


def exchange_plan(rng: jax.Array, batch_size: int, channels: int, p: float | jax.Array, *,
                  partner: str = "random", per_batch: bool = False
                  ) -> tuple[jax.Array, jax.Array]:
    """Which sample each sample takes channels from, and which channels.

    Args:
      rng: a PRNG key.
      batch_size: B; channels: C.
      p: probability in [0, 1] that a sample (a pair, for "reversed") is mixed; a Python number
        is checked here, a traced one is not.
      partner: "random" or "reversed" (see the module docstring).
      per_batch: one coin for the whole batch (the authors' code) instead of one per sample.

    Returns:
      (partners (B,) int32, take (B, C) bool): channel c of sample i is replaced by channel c
      of sample partners[i] where take[i, c]. A mixed sample's row has exactly C // 2 True
      entries, an unmixed one's none. partners[i] ≠ i whenever B > 1, except the middle sample
      of an odd batch in "reversed" mode. In "reversed" mode the two rows of a pair are equal.

    Raises:
      ValueError: p is a Python number outside [0, 1], or `partner` is unknown.
    """
    _check(p, partner)
    rng_partner, rng_channels, rng_coin = jax.random.split(rng, 3)
    index = jnp.arange(batch_size, dtype=jnp.int32)
    if partner == "reversed":
        partners = batch_size - 1 - index
        # Both members of a pair read the draws of its lower index, so they swap one subset.
        draw_row = jnp.minimum(index, partners)
    else:
        if batch_size > 1:
            # An offset in [1, B) from i is uniform over the other samples and never i itself.
            offset = jax.random.randint(rng_partner, (batch_size,), 1, batch_size, jnp.int32)
            partners = (index + offset) % batch_size
        else:
            partners = index
        draw_row = index
    # The C // 2 smallest of C uniform scores are a uniformly random subset of that size.
    scores = jax.random.uniform(rng_channels, (batch_size, channels))[draw_row]
    ranks = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)
    chosen = ranks < channels // 2
    if per_batch:
        mixed = jnp.broadcast_to(jax.random.bernoulli(rng_coin, p), (batch_size,))
    else:
        mixed = jax.random.bernoulli(rng_coin, p, (batch_size,))[draw_row]
    return partners, chosen & mixed[:, None]


def exchange_channels(rng: jax.Array, features: jax.Array, p: float | jax.Array, *,
                      partner: str = "random", per_batch: bool = False) -> jax.Array:
    """Channel-wise feature exchange of a batch of feature maps.

    With probability p, a sample's feature map gets exactly C // 2 of its channels, chosen at
    random, from a partner sample of the batch (a true swap within each pair for "reversed");
    its other channels are its own. Pure and jittable (`partner` and `per_batch` static).

    Args:
      rng: a PRNG key; the same key gives the same exchange.
      features: (B, ..., C), channels last, e.g. a generator's (B, H, W, C) maps.
      p: exchange probability in [0, 1] (SpaceshipNet: 0.7); p = 0 returns `features`.
      partner: "random" (a uniformly drawn other sample) or "reversed" (sample B − 1 − i, the
        authors' code); see the module docstring.
      per_batch: one coin for the whole batch, as the authors' code, instead of one per sample.

    Returns:
      (B, ..., C) of the same dtype: each value is a value of `features` at the same channel
      and position, of the sample itself or of its partner.

    Raises:
      ValueError: p is a Python number outside [0, 1], `partner` is unknown, or `features`
        has fewer than two axes.

    References:
      Yu et al., CVPR 2023, supplement §A.2 and Table D.
    """
    if features.ndim < 2:
        raise ValueError(f"features must be (B, ..., C), got shape {features.shape}.")
    batch_size, channels = features.shape[0], features.shape[-1]
    partners, take = exchange_plan(rng, batch_size, channels, p, partner=partner,
                                   per_batch=per_batch)
    take = take.reshape(batch_size, *(1,) * (features.ndim - 2), channels)
    return jnp.where(take, features[partners], features)
