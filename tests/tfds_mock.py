"""Prepared-looking tensorflow-datasets folders for tests that use `tfds.testing.mock_data`."""

import contextlib

import tensorflow_datasets as tfds

from jaxinv import data


def prepare_tfds_metadata(data_dir: str, name: str, file_format: str = "array_record",
                          num_examples: int = 7) -> None:
    """Writes the metadata of a prepared tfds dataset (no records) into `data_dir`.

    `tfds.builder(...).is_prepared()` only looks at this metadata, and `mock_data` with
    `MockPolicy.USE_FILES` reads it too, then serves `num_examples` random records per split
    in place of the files.
    """
    builder = tfds.builder(name, data_dir=data_dir, file_format=file_format)
    builder.data_path.mkdir(parents=True)
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[num_examples], num_bytes=0)
        for split in data.SPLITS]))
    builder.info.write_to_directory(builder.data_path)


@contextlib.contextmanager
def mocked_tfds(data_dir: str, name: str, num_examples: int):
    """Serves `num_examples` random records per split of tfds dataset `name`, found as if
    prepared in `data_dir` (tensorflow-datasets' default folder while the context is open)."""
    prepare_tfds_metadata(data_dir, name, num_examples=num_examples)
    with tfds.testing.mock_data(num_examples=num_examples,
                                policy=tfds.testing.MockPolicy.USE_FILES, data_dir=data_dir):
        yield
