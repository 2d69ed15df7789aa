"""Synthesis: Data/Class Impressions invert a real teacher, and the engine behind `synthesize`
resumes exactly, shards like one device, stops on NaN, refuses foreign workdirs and bad sizes;
TransferSets are stored without pickle and refused when damaged."""

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxinv import checkpoint, losses, models, synthesis
from jaxinv.synthesis import dirichlet, engine, impressions
from jaxinv.synthesis.method import SynthesisMethod, grouped_pixel_step, pixels
from jaxinv.synthesis.transfer_set import DamagedFileError, TransferSet
from jaxinv.teacher import Teacher

TAU = 20.0


def _agreement(logits, targets) -> float:
    return float(np.mean(np.argmax(logits, -1) == np.argmax(targets, -1)))


def _soft_ce(logits, targets) -> float:
    return float(losses.soft_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), TAU).mean())


def _start_images(method: SynthesisMethod, targets, rng=None) -> jax.Array:
    """The images a method starts from, before any step."""
    rng = jax.random.key(0) if rng is None else rng
    return method.images(method.init(rng, {"targets": jnp.asarray(targets)}))


@pytest.fixture(scope="module")
def random_teacher(random_variables) -> Teacher:
    """An untrained LeNet-5: enough to exercise the engine's bookkeeping, no data needed."""
    model = models.get_model("lenet5")
    return Teacher(model=model, variables=random_variables(model, (32, 32, 1)),
                   image_shape=(32, 32, 1))


def _dirichlet_inputs(teacher: Teacher, num_per_class: int, num: int | None = None):
    """({"targets"}, {"class", "beta"}) of Dirichlet targets, the first `num` rows."""
    similarity = dirichlet.class_similarity(teacher.head()[0])
    targets, classes, betas = (np.asarray(x)[:num] for x in dirichlet.dirichlet_targets(
        jax.random.key(1), similarity, (1.0, 0.1), num_per_class))
    return {"targets": targets}, {"class": classes, "beta": betas}


# --- Data and Class Impressions on a real MNIST teacher -----------------------------------------


def test_data_impressions_raise_agreement_and_lower_ce(mnist_teacher, mnist_impressions):
    """200 Adam steps take noise at chance agreement to > 90 % agreement with the Dirichlet
    targets' argmax, and lower the τ=20 soft cross-entropy (the DI objective, eq. 2)."""
    method, transfer_set = mnist_impressions
    targets = transfer_set.targets
    noise_logits = np.asarray(mnist_teacher.logits(_start_images(method, targets)))
    init_agreement, final_agreement = (_agreement(noise_logits, targets),
                                       _agreement(transfer_set.logits, targets))
    init_ce, final_ce = _soft_ce(noise_logits, targets), _soft_ce(transfer_set.logits, targets)
    print(f"DI agreement {init_agreement:.3f} -> {final_agreement:.3f}, "
          f"CE {init_ce:.3f} -> {final_ce:.3f}")
    assert init_agreement < 0.3
    assert final_agreement > 0.9
    assert final_ce < init_ce - 0.3
    # The stored logits are the teacher's on the stored images, which are valid images.
    chex.assert_trees_all_close(np.asarray(mnist_teacher.logits(transfer_set.images)),
                                transfer_set.logits, atol=1e-4, rtol=1e-4)
    assert transfer_set.images.min() >= 0.0 and transfer_set.images.max() <= 1.0
    np.testing.assert_array_equal(transfer_set.metadata["chunk"], np.repeat([0, 1], 80))
    np.testing.assert_array_equal(transfer_set.metadata["class"], np.repeat(np.arange(10), 16))
    assert transfer_set.method == "data_impressions" and transfer_set.config["temperature"] == TAU


def test_class_impressions_reach_high_agreement(mnist_teacher, tmp_path):
    """One-hot targets (Class Impressions, the β → 0 limit) are also reached from noise."""
    targets, classes, betas = map(np.asarray, dirichlet.one_hot_targets(10, 4))
    method = impressions.impressions_method(mnist_teacher, num_steps=50, learning_rate=0.05,
                                            name="class_impressions")
    init_agreement = _agreement(
        np.asarray(mnist_teacher.logits(_start_images(method, targets))), targets)
    transfer_set = synthesis.synthesize(method, mnist_teacher, {"targets": targets},
                                        metadata={"class": classes, "beta": betas}, seed=0,
                                        chunk_size=40, workdir=str(tmp_path))
    final_agreement = _agreement(transfer_set.logits, targets)
    print(f"CI agreement {init_agreement:.3f} -> {final_agreement:.3f}")
    assert init_agreement < 0.3
    assert final_agreement > 0.95
    assert transfer_set.method == "class_impressions"
    np.testing.assert_array_equal(transfer_set.metadata["beta"], np.zeros(40))


def test_pixel_prior_darkens_impressions_and_keeps_agreement(mnist_teacher, mnist_impressions,
                                                             tmp_path):
    """λ‖x‖² (λ = 1e-3) pulls the same 160 DIs to a darker mean pixel than the paper's λ = 0,
    while the teacher still agrees with > 90 % of the targets; λ < 0 is refused."""
    _, plain = mnist_impressions
    method = impressions.impressions_method(mnist_teacher, num_steps=200, pixel_l2=1e-3)
    dark = synthesis.synthesize(method, mnist_teacher, {"targets": plain.targets},
                                metadata=plain.metadata, seed=0, chunk_size=80,
                                workdir=str(tmp_path))
    print(f"mean pixel {plain.images.mean():.3f} (λ = 0) -> {dark.images.mean():.3f}")
    assert dark.images.mean() < plain.images.mean() - 0.1
    assert _agreement(dark.logits, dark.targets) > 0.9
    assert dark.config["pixel_l2"] == 1e-3
    with pytest.raises(ValueError, match="pixel_l2 λ must be ≥ 0"):
        impressions.impressions_method(mnist_teacher, pixel_l2=-1e-3)


def test_low_resolution_noise_starts_smooth_and_still_reaches_the_targets(
        mnist_teacher, mnist_impressions, tmp_path):
    """init_resolution R starts each impression from R x R uniform noise resized to 32x32:
    within [0, 1], far smoother than pixel-wise noise, identical to it at R = 32; the
    impressions still reach > 90 % agreement; R outside [1, 32] is refused."""
    _, plain = mnist_impressions
    rng = jax.random.key(3)
    pixelwise = _start_images(impressions.impressions_method(mnist_teacher), plain.targets, rng)
    full = _start_images(impressions.impressions_method(mnist_teacher, init_resolution=32),
                         plain.targets, rng)
    method = impressions.impressions_method(mnist_teacher, num_steps=200, init_resolution=8)
    smooth = _start_images(method, plain.targets, rng)
    assert smooth.shape == pixelwise.shape == (len(plain), 32, 32, 1)
    np.testing.assert_array_equal(full, pixelwise)
    assert 0.0 <= float(smooth.min()) and float(smooth.max()) <= 1.0
    assert (float(losses.total_variation_l2(smooth).mean())
            < 0.1 * float(losses.total_variation_l2(pixelwise).mean()))
    transfer_set = synthesis.synthesize(method, mnist_teacher, {"targets": plain.targets},
                                        metadata=plain.metadata, seed=0, chunk_size=80,
                                        workdir=str(tmp_path))
    assert _agreement(transfer_set.logits, transfer_set.targets) > 0.9
    assert transfer_set.config["init_resolution"] == 8
    for bad in (0, 33, 4.0, True):
        with pytest.raises(ValueError, match=r"init_resolution must be a whole number of pixels "
                                             r"in \[1, 32\]"):
            impressions.impressions_method(mnist_teacher, init_resolution=bad)


# --- Methods found by name, built from a config block -------------------------------------------


def test_synthesize_from_the_smoke_config_block(mnist_teacher, smoke_config_of, tmp_path):
    """The impressions block of zskd.py:smoke builds 160 Data Impressions (16 per class, half
    at each β) that the teacher agrees with far above chance, records the block's settings, and
    a rerun in the same workdir returns the finished set; a bad block is refused before
    anything is written."""
    block = smoke_config_of("zskd.py:smoke").synthesis
    workdir = str(tmp_path / "synthesis")
    transfer_set = synthesis.synthesize_from_config(mnist_teacher, block, workdir)
    assert len(transfer_set) == 10 * block.num_per_class
    assert transfer_set.image_shape == mnist_teacher.image_shape
    assert transfer_set.method == "data_impressions" and transfer_set.seed == block.seed
    assert (transfer_set.config["pixel_l2"], transfer_set.config["init_resolution"],
            transfer_set.config["num_steps"]) == (block.pixel_l2, block.init_resolution,
                                                  block.num_steps)
    np.testing.assert_array_equal(transfer_set.metadata["class"],
                                  np.repeat(np.arange(10), block.num_per_class))
    np.testing.assert_allclose(transfer_set.metadata["beta"],
                               np.tile(np.repeat(block.betas, block.num_per_class // 2), 10))
    np.testing.assert_array_equal(transfer_set.metadata["chunk"], 0)  # one chunk of 160
    assert transfer_set.images.min() >= 0.0 and transfer_set.images.max() <= 1.0
    agreement = _agreement(transfer_set.logits, transfer_set.targets)
    print(f"smoke block: teacher agrees with {agreement:.3f} of the targets")
    assert agreement > 0.8  # chance is 0.1

    again = synthesis.synthesize_from_config(mnist_teacher, block, workdir)
    np.testing.assert_array_equal(again.images, transfer_set.images)

    bad = block.copy_and_resolve_references()
    bad.temperature = 0.0
    with pytest.raises(ValueError, match="synthesis.temperature τ must be > 0"):
        synthesis.synthesize_from_config(mnist_teacher, bad, str(tmp_path / "bad"))
    bad = block.copy_and_resolve_references()
    bad.betas = (1.0, 0.1, 0.01)  # 16 per class cannot be split over 3 βs
    with pytest.raises(ValueError, match="multiple of len\\(betas\\)=3"):
        synthesis.synthesize_from_config(mnist_teacher, bad, str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()


def test_unknown_method_lists_the_available_ones():
    """A method is a module found by name; a name that is none says which ones exist."""
    assert "impressions" in synthesis.available_methods()
    assert not {"engine", "rounds", "method", "transfer_set", "dirichlet"} & set(
        synthesis.available_methods())
    assert synthesis.get_method_module("impressions") is impressions
    with pytest.raises(ValueError, match=re.escape(
            f"synthesis.method='nope' is not a jaxinv synthesis method; choose from "
            f"{synthesis.available_methods()}")):
        synthesis.get_method_module("nope")


# --- Resume, devices, NaN, foreign workdirs ---------------------------------------------------


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_bit_identically(random_teacher, tmp_path, monkeypatch):
    """Killed in chunk 1, a rerun skips the finished chunk 0 and ends with exactly the
    TransferSet of an uninterrupted run; a rerun with every chunk on disk computes nothing."""
    inputs, metadata = _dirichlet_inputs(random_teacher, 4)  # 40 rows: 16 + 16 + 8
    method = impressions.impressions_method(random_teacher, num_steps=4)
    kwargs = dict(metadata=metadata, seed=3, chunk_size=16, steps_per_call=2)
    straight = synthesis.synthesize(method, random_teacher, inputs, workdir=str(tmp_path / "a"),
                                    **kwargs)

    original_check = engine.check_finite
    computed = []

    def interrupt_in_chunk_1(losses, name, where, first_step):
        if where == "chunk 1":
            raise Interrupt
        original_check(losses, name, where, first_step)

    def record(losses, name, where, first_step):
        computed.append(where)
        original_check(losses, name, where, first_step)

    workdir = str(tmp_path / "b")
    monkeypatch.setattr(engine, "check_finite", interrupt_in_chunk_1)
    with pytest.raises(Interrupt):
        synthesis.synthesize(method, random_teacher, inputs, workdir=workdir, **kwargs)
    assert not os.path.exists(os.path.join(workdir, synthesis.TRANSFER_SET_FILE))
    with checkpoint.Checkpoints(os.path.join(workdir, "chunks")) as ckpts:
        assert ckpts.all_steps() == [0]

    monkeypatch.setattr(engine, "check_finite", record)
    resumed = synthesis.synthesize(method, random_teacher, inputs, workdir=workdir, **kwargs)
    # Two calls of 2 steps for each unfinished chunk; chunk 0 is read back, not recomputed.
    assert computed == ["chunk 1", "chunk 1", "chunk 2", "chunk 2"]
    for name in ("images", "logits", "targets"):
        assert np.array_equal(getattr(straight, name), getattr(resumed, name)), name
    assert straight.metadata.keys() == resumed.metadata.keys() == {"class", "beta", "chunk"}
    for name, values in straight.metadata.items():
        assert np.array_equal(values, resumed.metadata[name]), name
    np.testing.assert_array_equal(resumed.metadata["chunk"], np.repeat([0, 1, 2], [16, 16, 8]))

    # All chunks on disk but no final file: reassembled from the chunks alone.
    os.remove(os.path.join(workdir, synthesis.TRANSFER_SET_FILE))
    computed.clear()
    again = synthesis.synthesize(method, random_teacher, inputs, workdir=workdir, **kwargs)
    assert computed == []
    assert np.array_equal(again.images, straight.images)
    assert np.array_equal(again.logits, straight.logits)


_SHARDED_SYNTHESIS = textwrap.dedent("""
    import sys, jax, numpy as np
    jax.config.update("jax_num_cpu_devices", int(sys.argv[1]))
    from jaxinv import models, synthesis
    from jaxinv.synthesis import dirichlet, impressions
    from jaxinv.teacher import Teacher
    model = models.get_model("lenet5")
    abstract = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0), (32, 32, 1)))
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: (rng.normal(size=s.shape) / np.sqrt(
        np.prod(s.shape[:-1]) if s.ndim > 1 else 10.0)).astype(s.dtype), abstract)
    teacher = Teacher(model=model, variables=variables, image_shape=(32, 32, 1))
    similarity = dirichlet.class_similarity(teacher.head()[0])
    targets, classes, betas = map(np.asarray, dirichlet.dirichlet_targets(
        jax.random.key(1), similarity, (1.0, 0.1), 4))
    method = impressions.impressions_method(teacher, num_steps=6)
    ts = synthesis.synthesize(method, teacher, {"targets": targets[:32]},
                              metadata={"class": classes[:32]}, seed=5, chunk_size=16,
                              workdir=sys.argv[2])
    np.savez(sys.argv[3], images=ts.images, logits=ts.logits)
    print(jax.device_count())
""")


def test_eight_simulated_devices_match_one(tmp_path):
    """The example axis is sharded over 8 devices; every example's optimisation is its own,
    so the TransferSet is bit-identical to the one made on a single device."""
    procs = {devices: subprocess.Popen(
        [sys.executable, "-c", _SHARDED_SYNTHESIS, str(devices),
         str(tmp_path / f"run_{devices}"), str(tmp_path / f"set_{devices}.npz")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for devices in (1, 8)}
    outputs = {}
    for devices, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        assert stdout.strip().splitlines()[-1] == str(devices)
        with np.load(tmp_path / f"set_{devices}.npz") as f:
            outputs[devices] = dict(f)
    assert not np.array_equal(outputs[1]["images"][0], outputs[1]["images"][1])
    np.testing.assert_array_equal(outputs[1]["images"], outputs[8]["images"])
    np.testing.assert_array_equal(outputs[1]["logits"], outputs[8]["logits"])


def _nan_method(teacher: Teacher) -> SynthesisMethod:
    """Pixels of examples aiming at class 0 fall by 0.15 a step; the objective is NaN once
    they are negative (step 4). Examples aiming elsewhere do not move and stay finite."""
    def init_params(rng, inputs):
        del rng
        return jnp.full((inputs["targets"].shape[0], *teacher.image_shape), 0.5)

    def loss_fn(teacher_variables, images, inputs, rng):
        del teacher_variables, rng
        descent = jnp.sum(images) * inputs["targets"][:, 0].sum()
        return descent + jnp.where(jnp.min(images) < 0, jnp.nan, 0.0)

    init, step = grouped_pixel_step(init_params, loss_fn, optax.sgd(0.15), project=None)
    return SynthesisMethod(name="nan_method", init=init, step=step, images=pixels, num_steps=6)


def test_nan_objective_stops_naming_method_chunk_and_step(random_teacher, tmp_path):
    """A NaN objective raises FloatingPointError with method, chunk and step; the finished
    chunk 0 stays on disk, nothing of chunk 1 is written and no TransferSet is assembled."""
    classes = np.repeat([1, 0], 16)
    targets = np.eye(10, dtype=np.float32)[classes]
    with pytest.raises(FloatingPointError, match=r"nan_method: .*nan in chunk 1 at step 4;"):
        synthesis.synthesize(_nan_method(random_teacher), random_teacher, {"targets": targets},
                             metadata={"class": classes}, seed=0, chunk_size=16,
                             steps_per_call=2, workdir=str(tmp_path))
    with checkpoint.Checkpoints(str(tmp_path / "chunks")) as ckpts:
        assert ckpts.all_steps() == [0]
    assert not (tmp_path / synthesis.TRANSFER_SET_FILE).exists()


def test_workdir_of_another_config_is_refused(random_teacher, tmp_path):
    """Resuming chunks made with another seed, learning rate or targets would mix two runs:
    refused, saying what differs, and the workdir is left as it was."""
    inputs, metadata = _dirichlet_inputs(random_teacher, 2, num=16)
    kwargs = dict(metadata=metadata, chunk_size=16, workdir=str(tmp_path))
    method = impressions.impressions_method(random_teacher, num_steps=2)
    synthesis.synthesize(method, random_teacher, inputs, seed=0, **kwargs)
    before = sorted(os.walk(tmp_path))
    record = json.load(open(tmp_path / "synthesis.json"))
    with pytest.raises(ValueError, match=r"different config(.|\n)*seed: 0 -> 1"):
        synthesis.synthesize(method, random_teacher, inputs, seed=1, **kwargs)
    other_lr = impressions.impressions_method(random_teacher, num_steps=2, learning_rate=0.01)
    with pytest.raises(ValueError, match="method_config.learning_rate: 0.05 -> 0.01"):
        synthesis.synthesize(other_lr, random_teacher, inputs, seed=0, **kwargs)
    other_targets = {"targets": inputs["targets"][::-1]}
    with pytest.raises(ValueError, match="inputs.targets: "):
        synthesis.synthesize(method, random_teacher, other_targets, seed=0, **kwargs)
    assert sorted(os.walk(tmp_path)) == before
    assert json.load(open(tmp_path / "synthesis.json")) == record


# --- TransferSet ---------------------------------------------------------------------------------


def _transfer_set(n: int = 12) -> TransferSet:
    rng = np.random.default_rng(0)
    targets = rng.dirichlet(np.ones(10), n).astype(np.float32)
    return TransferSet(images=rng.random((n, 8, 8, 1), np.float32),
                       logits=rng.normal(size=(n, 10)).astype(np.float32), targets=targets,
                       metadata={"class": targets.argmax(-1).astype(np.int32),
                                 "beta": np.full(n, 0.1, np.float32),
                                 "chunk": np.repeat([0, 1], n // 2).astype(np.int32)},
                       method="data_impressions", seed=7,
                       config={"temperature": 20.0, "schedule": "linear", "nested": {"a": [1]}})


def test_transfer_set_roundtrip_without_pickle(tmp_path):
    """save/load keeps every array, every metadata array with its dtype, and method, seed and
    config; the file opens with allow_pickle=False and no temporary file is left."""
    original = _transfer_set()
    path = str(tmp_path / "set.npz")
    original.save(path)
    with np.load(path, allow_pickle=False) as f:
        assert f["images"].dtype == np.float32 and json.loads(str(f["meta"]))["seed"] == 7
    loaded = TransferSet.load(path)
    for name in ("images", "logits", "targets"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name))
    assert loaded.metadata.keys() == original.metadata.keys()
    for name, values in original.metadata.items():
        np.testing.assert_array_equal(loaded.metadata[name], values)
        assert loaded.metadata[name].dtype == values.dtype, name
    assert (loaded.method, loaded.seed, loaded.config) == (original.method, 7, original.config)
    assert not [p for p in os.listdir(tmp_path) if "tmp" in p]


def test_transfer_set_subset_and_shape_check(tmp_path):
    """subset keeps rows aligned across arrays and metadata; a student of another input shape
    is refused; a file that is not a TransferSet, or metadata of the wrong length, is refused."""
    original = _transfer_set()
    part = original.subset(np.array([5, 0, 11]))
    assert len(part) == 3
    np.testing.assert_array_equal(part.images, original.images[[5, 0, 11]])
    np.testing.assert_array_equal(part.targets, original.targets[[5, 0, 11]])
    np.testing.assert_array_equal(part.metadata["class"], original.metadata["class"][[5, 0, 11]])
    np.testing.assert_array_equal(part.metadata["chunk"], [0, 0, 1])
    assert part.method == original.method and part.seed == original.seed
    original.check_image_shape((8, 8, 1))
    with pytest.raises(ValueError, match=r"shape \(8, 8, 1\) but the student takes \(32, 32, 1\)"):
        original.check_image_shape((32, 32, 1))
    np.savez(tmp_path / "other.npz", images=original.images)
    with pytest.raises(DamagedFileError, match="not a TransferSet file"):
        TransferSet.load(str(tmp_path / "other.npz"))
    with pytest.raises(ValueError, match="logits has 3 rows but there are 12 images"):
        TransferSet(**{**original.__dict__, "logits": original.logits[:3]})
    with pytest.raises(ValueError, match=r"metadata\['beta'\] has 2 rows but there are 12"):
        TransferSet(**{**original.__dict__,
                       "metadata": {**original.metadata, "beta": np.zeros(2)}})


def test_truncated_transfer_set_is_a_damaged_file_naming_it(tmp_path):
    """A transfer_set.npz cut short (a full disk, a copy interrupted) is refused with a
    DamagedFileError that names the file and says to delete it and rerun."""
    path = str(tmp_path / synthesis.TRANSFER_SET_FILE)
    _transfer_set().save(path)
    with open(path, "rb") as f:
        head = f.read()[:os.path.getsize(path) // 2]
    with open(path, "wb") as f:
        f.write(head)
    with pytest.raises(DamagedFileError, match=re.escape(path) + " is damaged(.|\n)*delete it"):
        TransferSet.load(path)
    with pytest.raises(FileNotFoundError, match="No TransferSet at"):
        TransferSet.load(str(tmp_path / "missing.npz"))


# --- Bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_temperature_must_be_positive(random_teacher, temperature):
    """τ ≤ 0 has no meaning for a softened softmax and is refused up front."""
    with pytest.raises(ValueError, match="temperature τ must be > 0"):
        impressions.impressions_method(random_teacher, temperature=temperature)


def test_chunk_size_must_divide_over_devices(random_teacher, tmp_path):
    """A chunk of 12 cannot be split over the 8 devices: refused before the workdir exists."""
    inputs, metadata = _dirichlet_inputs(random_teacher, 2)
    with pytest.raises(ValueError, match="chunk_size = 12 is not a multiple of the 8 devices"):
        synthesis.synthesize(impressions.impressions_method(random_teacher, num_steps=2),
                             random_teacher, inputs, metadata=metadata, seed=0, chunk_size=12,
                             workdir=str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_steps_per_call_must_divide_num_steps(random_teacher, tmp_path):
    """4 steps cannot be run 3 per call: refused, naming a divisor, before the workdir exists."""
    inputs, metadata = _dirichlet_inputs(random_teacher, 2, num=16)
    with pytest.raises(ValueError, match="num_steps 4 is not a multiple of steps_per_call 3; "
                                         "choose a divisor of 4"):
        synthesis.synthesize(impressions.impressions_method(random_teacher, num_steps=4),
                             random_teacher, inputs, metadata=metadata, seed=0, chunk_size=16,
                             steps_per_call=3, workdir=str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_micro_batch_changes_only_float_rounding(random_teacher, tmp_path):
    """Gradients computed 4 examples at a time or 64 at a time give the same TransferSet, up to
    float rounding (XLA blocks a convolution differently for different batch sizes)."""
    inputs, metadata = _dirichlet_inputs(random_teacher, 4)
    sets = [synthesis.synthesize(
        impressions.impressions_method(random_teacher, num_steps=4, micro_batch=micro),
        random_teacher, inputs, metadata=metadata, seed=3, chunk_size=40,
        workdir=str(tmp_path / str(micro))) for micro in (4, 64)]
    np.testing.assert_allclose(sets[0].images, sets[1].images, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sets[0].logits, sets[1].logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("micro_batch", [0, -4, 2.5, True])
def test_micro_batch_below_one_is_refused(random_teacher, micro_batch):
    """A micro-batch of no whole example would loop over nothing: refused when the method is
    built, before any run."""
    message = f"micro_batch must be ≥ 1, got {micro_batch!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        impressions.impressions_method(random_teacher, num_steps=2, micro_batch=micro_batch)


def _group_spread_method(group_size: int) -> tuple[SynthesisMethod, Callable]:
    """Each member's mean pixel is pulled to its target's first entry, and the group's mean of
    means to 0.5, so the members of a group move together. Returns the method and its
    `init_params`."""
    def init_params(rng, inputs):
        return jax.random.uniform(rng, (inputs["targets"].shape[0], 32, 32, 1))

    def loss_fn(teacher_variables, images, inputs, rng):
        del teacher_variables, rng
        means = images.mean(axis=(1, 2, 3))
        return jnp.sum((means - inputs["targets"][:, 0]) ** 2) + (means.mean() - 0.5) ** 2

    # SGD at the pixel count: every pixel of an image gets the same gradient, so the step on an
    # image's mean is 2 (m - t) + 2 (group mean - 0.5) / g.
    init, step = grouped_pixel_step(init_params, loss_fn, optax.sgd(0.1 * 32 * 32),
                                    group_size=group_size, project=None, micro_batch=1)
    method = SynthesisMethod(name="group_spread", init=init, step=step, images=pixels,
                             num_steps=3, group_size=group_size)
    return method, init_params


def test_groups_are_optimised_jointly_and_must_not_span_devices(random_teacher, tmp_path):
    """Groups of 2 on 8 devices follow the coupled dynamics worked out by hand, even with a
    micro-batch smaller than a group; 4 groups cannot be split over 8 devices and are refused
    before anything is written."""
    inputs, metadata = _dirichlet_inputs(random_teacher, 2, num=16)
    targets = inputs["targets"]
    kwargs = dict(metadata=metadata, seed=0, chunk_size=16)
    method, init_params = _group_spread_method(2)
    result = synthesis.synthesize(method, random_teacher, inputs, workdir=str(tmp_path / "g2"),
                                  **kwargs)
    init_rng, _ = jax.random.split(jax.random.fold_in(jax.random.key(0), 0))
    means = np.asarray(init_params(init_rng, inputs)).mean(axis=(1, 2, 3))
    for _ in range(method.num_steps):
        group_means = means.reshape(-1, 2).mean(axis=1).repeat(2)
        means = means - 0.1 * (2 * (means - targets[:, 0]) + (group_means - 0.5))
    np.testing.assert_allclose(result.images.mean(axis=(1, 2, 3)), means, atol=1e-5)

    with pytest.raises(ValueError, match=r"chunk_size / group_size \(16 / 4\) = 4 is not a "
                                         r"multiple of the 8 devices"):
        synthesis.synthesize(_group_spread_method(4)[0], random_teacher, inputs,
                             workdir=str(tmp_path / "g4"), **kwargs)
    assert not (tmp_path / "g4").exists()
