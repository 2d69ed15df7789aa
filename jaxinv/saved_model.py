"""A trained model on disk: its variables and what it is, without its optimiser.

`workdir/model/` holds `variables/` (Orbax) and `model.json`, the :class:`ModelCard`: the
registry name that builds the module, the input shape and classes, and the dataset and
preprocessing it was trained on, so that a later stage can check it against its own before
doing any work. `model.json` is written last, so its presence marks a complete save.
"""

from __future__ import annotations

import dataclasses
import os

import flax.linen as nn
import jax
import orbax.checkpoint as ocp

from jaxinv import models, parallel, report
from jaxinv import workdir as workdir_lib

MODEL_DIR = "model"
CARD_FILE = "model.json"


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a saved model is and what it was trained on.

    Attributes:
      model: its name in `jaxinv.models` (builds the module).
      num_classes: K, the number of logits.
      image_shape: (H, W, C) of the images it takes, values in [0, 1].
      dataset: the dataset it was trained on ("" when unknown).
      image_size: the side the dataset was resized to for it (its preprocessing).
      classes: the dataset's classes its outputs stand for, in order (None: all of them).
    """
    model: str
    num_classes: int
    image_shape: tuple[int, int, int]
    dataset: str = ""
    image_size: int | None = None
    classes: tuple[int, ...] | None = None

    def build(self) -> nn.Module:
        """The unbound module."""
        return models.get_model(self.model, num_classes=self.num_classes)


def model_dir(path: str) -> str:
    """`path/model` when `path` is a run's workdir, else `path` itself."""
    inner = os.path.join(path, MODEL_DIR)
    return inner if os.path.isdir(inner) else path


def save_model(directory: str, card: ModelCard, variables: dict) -> None:
    """Writes `variables` and `card` into `directory` (created; replaced if incomplete)."""
    directory = os.path.abspath(directory)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.join(directory, "variables"), variables, force=True)
    report.write_json(os.path.join(directory, CARD_FILE), dataclasses.asdict(card))


def is_saved_model(path: str) -> bool:
    """True when `path` (a model folder or a run's workdir) holds a complete saved model."""
    return os.path.exists(os.path.join(model_dir(path), CARD_FILE))


def read_card(path: str) -> ModelCard:
    """The card of the complete saved model at `path`, without reading its variables."""
    saved = workdir_lib.read_record(os.path.join(os.path.abspath(model_dir(path)), CARD_FILE))
    classes = saved.get("classes")
    return ModelCard(**{**saved, "image_shape": tuple(saved["image_shape"]),
                        "classes": None if classes is None else tuple(classes)})


def load_model(path: str) -> tuple[nn.Module, dict, ModelCard]:
    """The module, variables and card saved at `path` (a model folder or a run's workdir).

    Raises:
      FileNotFoundError: no complete saved model there; the message says how to make one.
      ValueError: the saved files are damaged.
    """
    directory = os.path.abspath(model_dir(path))
    card_path = os.path.join(directory, CARD_FILE)
    if not os.path.exists(card_path):
        results_path = os.path.join(path, "results.json")
        teacher = (workdir_lib.read_record(results_path).get("teacher")
                   if os.path.exists(results_path) else None)
        hint = (f" It is a pipeline run; the teacher it used is at {teacher}." if teacher
                else "")
        raise FileNotFoundError(
            f"No trained model at {path} (no {MODEL_DIR}/{CARD_FILE}).{hint} Train one with "
            "`jaxinv train <config> --workdir DIR` and pass that DIR; a run that did not finish "
            "resumes when its command is rerun.")
    card = read_card(path)
    module = card.build()
    # Restored replicated over this machine's devices, whatever devices saved it.
    abstract = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=parallel.replicated()),
        jax.eval_shape(lambda: models.init_variables(module, jax.random.key(0), card.image_shape)))
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            variables = checkpointer.restore(os.path.join(directory, "variables"), abstract)
    except Exception as err:  # Orbax and TensorStore raise many types for damaged files
        raise ValueError(f"The saved model variables in {directory}/variables are damaged or do "
                         f"not fit a {card.model} ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200]}); delete {directory} and rerun the "
                         "command that trained it.") from err
    return module, variables, card
