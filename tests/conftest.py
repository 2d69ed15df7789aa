"""Shared test set-up: 8 simulated CPU devices, a persistent compilation cache, the real data
folder, one teacher store.

The tests of a test process share one teacher store (`JAXINV_TEACHER_STORE`) for the
session, so end-to-end tests of configs whose teacher is `teacher.py:smoke` reuse the one
MNIST teacher that the `mnist_teacher` fixture trains, instead of each training its own. Under
pytest-xdist (`-n 2`) each worker is such a process, with its own store.
"""

import gc
import os
import pathlib
import tempfile

import jax
import pytest

# DESIGN.md: tests run on 8 simulated CPU devices; this must happen before any device is used.
jax.config.update("jax_num_cpu_devices", 8)
# Tests rebuild the same methods and models many times over (fresh closures, so jit's in-memory
# cache misses) and in subprocesses; XLA's persistent cache, keyed by the compiled program,
# compiles each once for both xdist workers and their subprocesses (measured on test_continual.py:
# a quarter less time). The environment carries it into subprocesses.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "jaxinv-tests-compilation-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "configs"
# Where CI keeps the real datasets relative to the repository (JAXINV_DATA_DIR=../shared/data).
_SIBLING_DATA_DIR = REPO.parent / "shared" / "data"


def _data_dir_or_skip() -> str:
    path = os.environ.get("JAXINV_DATA_DIR")
    if path:
        # Absolute, so tests that change directory still find it (CI passes ../shared/data).
        return os.path.abspath(path)
    if _SIBLING_DATA_DIR.is_dir():
        return str(_SIBLING_DATA_DIR)
    pytest.skip("real datasets not found: set JAXINV_DATA_DIR to the folder holding mnist.npz "
                "and the other files described in shared/data/README.md")


@pytest.fixture
def data_dir() -> str:
    """The folder of real npz datasets: $JAXINV_DATA_DIR, else ../shared/data next to the repo."""
    return _data_dir_or_skip()


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_code():
    """Frees each module's compiled executables when it ends: a test process runs many
    modules, and the jit caches otherwise keep every executable (and the methods and teachers
    their static arguments close over) until it exits."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="session")
def session_data_dir() -> str:
    """`data_dir` for session- and module-scoped fixtures."""
    return _data_dir_or_skip()


@pytest.fixture(scope="session", autouse=True)
def teacher_store(tmp_path_factory) -> str:
    """One teacher store for the whole session (pipeline.TEACHER_STORE_ENV)."""
    from jaxinv import pipeline

    store = str(tmp_path_factory.mktemp("teacher_store"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(pipeline.TEACHER_STORE_ENV, store)
        yield store


@pytest.fixture(scope="session")
def smoke_config_of():
    """`spec -> ConfigDict` of a bundled config, e.g. "zskd.py:smoke"."""
    from jaxinv import experiment_configs

    return lambda spec: experiment_configs.load_config(str(CONFIGS / spec))


@pytest.fixture(scope="session")
def mnist_teacher(session_data_dir, teacher_store, smoke_config_of):
    """The real LeNet-5 MNIST teacher of `zskd.py:smoke` (150 steps on 2048 images, ~90 % test
    accuracy), trained once into the session's teacher store, as the pipeline gets it."""
    from jaxinv import data, pipeline, train

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXINV_DATA_DIR", session_data_dir)
        teacher, _ = pipeline.obtain_teacher(smoke_config_of("zskd.py:smoke"))
        test = data.load_dataset("mnist", "test")
    accuracy = train.evaluate(teacher.model, teacher.variables, test.images, test.labels)
    assert accuracy["accuracy"] > 85.0, accuracy
    return teacher


@pytest.fixture(scope="session")
def mnist_bn_teacher(session_data_dir, teacher_store, smoke_config_of):
    """The BatchNorm CNN teacher of `deepinversion.py:smoke` (150 steps on 2048 MNIST images),
    trained once into the session's teacher store."""
    from jaxinv import pipeline

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXINV_DATA_DIR", session_data_dir)
        teacher, _ = pipeline.obtain_teacher(smoke_config_of("deepinversion.py:smoke"))
    return teacher


@pytest.fixture(scope="session")
def mnist_impressions(mnist_teacher, tmp_path_factory):
    """160 Data Impressions of `mnist_teacher` (βs 1.0 and 0.1, 200 Adam steps), made once.

    Returns (method, transfer_set); the method is the `impressions_method` that made them.
    """
    import numpy as np

    from jaxinv import synthesis
    from jaxinv.synthesis import dirichlet, impressions

    similarity = dirichlet.class_similarity(mnist_teacher.head()[0])
    targets, classes, betas = dirichlet.dirichlet_targets(jax.random.key(0), similarity,
                                                          (1.0, 0.1), num_per_class=16)
    method = impressions.impressions_method(mnist_teacher, temperature=20.0, num_steps=200,
                                            learning_rate=0.05, schedule="linear")
    transfer_set = synthesis.synthesize(
        method, mnist_teacher, {"targets": np.asarray(targets)},
        metadata={"class": np.asarray(classes), "beta": np.asarray(betas)}, seed=0,
        chunk_size=80, workdir=str(tmp_path_factory.mktemp("mnist_impressions")))
    return method, transfer_set


def _random_variables(model, image_shape, seed: int = 0) -> dict:
    """LeCun-scaled numpy weights in the layout of `model.init`, BN statistics at their defaults.

    Compiling flax's initialisers costs ~5 s per model on a busy CPU; filling the shapes of
    `jax.eval_shape` with numpy costs nothing and gives an equally valid (untrained) network.
    """
    import numpy as np

    from jaxinv import models

    abstract = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0),
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
