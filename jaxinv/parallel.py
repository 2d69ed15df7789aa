"""Device mesh and shardings: one `data` axis over every device on every host.

Batches and synthesis chunks are split along `data`; parameters are replicated. Multi-host runs
call :func:`initialize_distributed` first, then every host feeds only its own slice of a batch.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed() -> None:
    """Joins a multi-host run; call it once per process before any device is touched.

    jax reads the coordinator address and process ids from the cluster environment (TPU pod,
    SLURM, ...). Single-process runs must not call it.
    """
    jax.distributed.initialize()


@functools.cache
def data_mesh() -> Mesh:
    """A 1-D mesh named `data` spanning every device of every host."""
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh | None = None) -> NamedSharding:
    """Sharding that keeps a full copy on every device (parameters, optimiser state)."""
    return NamedSharding(mesh or data_mesh(), PartitionSpec())


def batch_sharded(mesh: Mesh | None = None) -> NamedSharding:
    """Sharding that splits the leading (example) axis over `data`."""
    return NamedSharding(mesh or data_mesh(), PartitionSpec(DATA_AXIS))


def num_data_shards(mesh: Mesh | None = None) -> int:
    """How many ways the example axis is split; batch sizes must be a multiple of it."""
    return (mesh or data_mesh()).shape[DATA_AXIS]


def check_divisible(size: int, what: str, mesh: Mesh | None = None) -> None:
    """Raises a clear error when `size` cannot be split evenly over the data axis."""
    shards = num_data_shards(mesh)
    if size % shards:
        raise ValueError(
                f"{what} = {size} is not a multiple of the {shards} devices on the `data` axis; "
                f"choose a multiple of {shards}.")


def shard_batch(tree, mesh: Mesh | None = None):
    """Places host arrays (leading axis = examples) on the mesh, split along `data`.

    Each process passes the global batch in a single-host run and its own local slice in a
    multi-host run; `jax.make_array_from_process_local_data` assembles the global array.
    """
    sharding = batch_sharded(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                                            tree)


def replicate(tree, mesh: Mesh | None = None):
    """Copies a pytree onto every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))
