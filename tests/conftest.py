"""Shared test set-up: 8 simulated CPU devices and the real data folder."""

import os
import pathlib

import jax
import pytest

# DESIGN.md: tests run on 8 simulated CPU devices; this must happen before any device is used.
jax.config.update("jax_num_cpu_devices", 8)

# Where CI keeps the real datasets relative to the repository (JAXINV_DATA_DIR=../shared/data).
_SIBLING_DATA_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def data_dir() -> str:
    """The folder of real npz datasets: $JAXINV_DATA_DIR, else ../shared/data next to the repo."""
    return _data_dir_or_skip()


def _data_dir_or_skip() -> str:
    path = os.environ.get("JAXINV_DATA_DIR")
    if path:
        return path
    if _SIBLING_DATA_DIR.is_dir():
        return str(_SIBLING_DATA_DIR)
    pytest.skip("real datasets not found: set JAXINV_DATA_DIR to the folder holding mnist.npz "
                "and the other files described in shared/data/README.md")


@pytest.fixture(scope="session")
def session_data_dir() -> str:
    """`data_dir` for session- and module-scoped fixtures."""
    return _data_dir_or_skip()


@pytest.fixture(scope="session")
def mnist_teacher(session_data_dir, tmp_path_factory):
    """A real LeNet-5 MNIST teacher (150 steps on 2048 images, ~90 % test accuracy), trained once.

    Returns the `Teacher` loaded by path, as a user of `jaxinv train` would get it.
    """
    from jaxinv import config_files, teacher, train

    config = config_files.load_config(
        str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"
            / "teacher.py") + ":smoke")
    config.train_limit = 2048
    config.num_steps = 150
    config.checkpoint_every = 150
    config.log_every = 50
    workdir = str(tmp_path_factory.mktemp("mnist_teacher"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXINV_DATA_DIR", session_data_dir)
        results = train.train_and_evaluate(config, workdir)
    assert results["test_accuracy"] > 85.0, results
    return teacher.load_teacher(workdir)


@pytest.fixture(scope="session")
def mnist_impressions(mnist_teacher, tmp_path_factory):
    """160 Data Impressions of `mnist_teacher` (βs 1.0 and 0.1, 200 Adam steps), made once.

    Returns (method, transfer_set); the method is the `impressions_method` that made them.
    """
    import numpy as np

    from jaxinv.synthesis import dirichlet, impressions, runner

    similarity = dirichlet.class_similarity(mnist_teacher.head()[0])
    targets, classes, betas = dirichlet.dirichlet_targets(jax.random.key(0), similarity,
                                                          (1.0, 0.1), num_per_class=16)
    method = impressions.impressions_method(mnist_teacher, temperature=20.0, num_steps=200,
                                            learning_rate=0.05, schedule="linear")
    transfer_set = runner.synthesize(
        method, mnist_teacher, np.asarray(targets), classes=np.asarray(classes),
        betas=np.asarray(betas), seed=0, chunk_size=80,
        workdir=str(tmp_path_factory.mktemp("mnist_impressions")))
    return method, transfer_set


def _random_variables(model, image_shape, seed: int = 0) -> dict:
    """LeCun-scaled numpy weights in the layout of `model.init`, BN statistics at their defaults.

    Compiling flax's initialisers costs ~5 s per model on a busy CPU; filling the shapes of
    `jax.eval_shape` with numpy costs nothing and gives an equally valid (untrained) network.
    """
    import numpy as np

    from jaxinv import train

    abstract = jax.eval_shape(lambda: train.init_variables(model, jax.random.key(0),
                                                           tuple(image_shape)))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name in ("var", "scale"):
            return np.ones(leaf.shape, leaf.dtype)
        if name == "mean":
            return np.zeros(leaf.shape, leaf.dtype)
        scale = 0.1 if name == "bias" else 1.0 / np.sqrt(max(int(np.prod(leaf.shape[:-1])), 1))
        return (scale * rng.normal(size=leaf.shape)).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)


@pytest.fixture(scope="session")
def random_variables():
    """`(model, image_shape, seed=0) -> variables`: an untrained model's weights, no compile."""
    return _random_variables
