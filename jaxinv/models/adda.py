"""The LeNet encoder and the domain discriminator of ADDA, for 28x28 digit adaptation.

References: Tzeng et al., "Adversarial Discriminative Domain Adaptation", CVPR 2017, and its
code at github.com/erictzeng/adda; Nayak et al., "Mining Data Impressions from Deep Models as
Substitute for the Unavailable Training Data", TPAMI 2021, Sec. 4.2 (source-free adaptation).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxinv.models.lenet import max_pool_2x2


class AddaLeNet(nn.Module):
    """ADDA's LeNet: conv 20@5x5, pool, conv 50@5x5, channel dropout, pool, fc 500, head.

    `encode` gives the 500-d encoder output that ADDA adapts and the discriminator sees;
    calling the module adds the classifier head (431,080 parameters with 10 classes).

    Attributes:
      num_classes: number of output logits.
      dropout_rate: probability of dropping a whole channel after the second convolution;
        with train=True, apply needs `rngs={"dropout": key}` when it is positive. The
        TensorFlow code of Tzeng et al. has none (rate 0).

    References: Tzeng et al., CVPR 2017, Sec. 5.1; github.com/erictzeng/adda
    (adda/models/lenet.py).
    """

    num_classes: int = 10
    dropout_rate: float = 0.5

    def setup(self) -> None:
        """Declares the layers shared by `encode` and `__call__`."""
        self.conv1 = nn.Conv(20, (5, 5), padding="VALID")
        self.conv2 = nn.Conv(50, (5, 5), padding="VALID")
        self.channel_dropout = nn.Dropout(self.dropout_rate, broadcast_dims=(-3, -2))
        self.fc3 = nn.Dense(500)
        self.head = nn.Dense(self.num_classes)

    def encode(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Maps images to encoder features.

        Call it with `model.apply(variables, images, method=AddaLeNet.encode)`.

        Args:
          images: (N, 28, 28, 1) float32 in [0, 1], used as they are.
          train: apply dropout.

        Returns:
          (N, 500) non-negative features.
        """
        x = max_pool_2x2(nn.relu(self.conv1(images)))
        x = nn.relu(self.conv2(x))
        x = max_pool_2x2(self.channel_dropout(x, deterministic=not train))
        x = x.reshape(*x.shape[:-3], -1)
        return nn.relu(self.fc3(x))

    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Classifies images.

        Args:
          images: (N, 28, 28, 1) float32 in [0, 1].
          train: apply dropout.

        Returns:
          (N, num_classes) logits.
        """
        features = self.encode(images, train)
        self.sow("intermediates", "features", features)
        return self.head(features)


class AddaDiscriminator(nn.Module):
    """Domain discriminator: two dense layers of 500 with leaky ReLU, then source/target logits.

    Attributes:
      num_classes: number of domains, 2 (source and target).
      hidden_features: widths of the hidden layers.
      negative_slope: leaky ReLU slope for negative inputs (tflearn's default, which the
        ADDA code uses).

    References: Tzeng et al., CVPR 2017, Sec. 5.1; github.com/erictzeng/adda
    (adda/adversary.py); Nayak et al., TPAMI 2021, Sec. 4.2.
    """

    num_classes: int = 2
    hidden_features: tuple[int, ...] = (500, 500)
    negative_slope: float = 0.1

    @nn.compact
    def __call__(self, features: jax.Array, train: bool = False) -> jax.Array:
        """Scores which domain encoder features come from.

        Args:
          features: (N, D) encoder features, e.g. `AddaLeNet.encode` outputs (D = 500).
          train: unused (no BatchNorm or dropout); kept for the common model signature.

        Returns:
          (N, num_classes) domain logits.
        """
        del train
        x = features
        for index, width in enumerate(self.hidden_features, start=1):
            x = nn.leaky_relu(nn.Dense(width, name=f"fc{index}")(x), self.negative_slope)
        self.sow("intermediates", "features", x)
        return nn.Dense(self.num_classes, name="head")(x)
