"""The synthesis runner and Data/Class Impressions: they invert a real teacher, resume exactly,
shard like one device, stop on NaN, refuse foreign workdirs, and store TransferSets safely."""

import json
import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxinv import checkpoint, losses, models
from jaxinv.synthesis import dirichlet, impressions, runner
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.teacher import Teacher

TAU = 20.0


def _agreement(logits, targets) -> float:
    return float(np.mean(np.argmax(logits, -1) == np.argmax(targets, -1)))


def _soft_ce(logits, targets) -> float:
    return float(losses.soft_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), TAU).mean())


@pytest.fixture(scope="module")
def random_teacher(random_variables) -> Teacher:
    """An untrained LeNet-5: enough to exercise the runner's bookkeeping, no data needed."""
    model = models.get_model("lenet5")
    return Teacher(model=model, variables=random_variables(model, (32, 32, 1)),
                   image_shape=(32, 32, 1))


def _dirichlet_targets(teacher: Teacher, num_per_class: int):
    similarity = dirichlet.class_similarity(teacher.head()[0])
    targets, classes, betas = dirichlet.dirichlet_targets(jax.random.key(1), similarity,
                                                          (1.0, 0.1), num_per_class)
    return np.asarray(targets), np.asarray(classes), np.asarray(betas)


# --- Data and Class Impressions on a real MNIST teacher -----------------------------------------


def test_data_impressions_raise_agreement_and_lower_ce(mnist_teacher, mnist_impressions):
    """200 Adam steps take noise at chance agreement to > 90 % agreement with the Dirichlet
    targets' argmax, and lower the τ=20 soft cross-entropy (the DI objective, eq. 2)."""
    method, transfer_set = mnist_impressions
    targets = transfer_set.targets
    noise = method.init_fn(jax.random.key(0), jnp.asarray(targets))
    noise_logits = np.asarray(mnist_teacher.logits(noise))
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
    np.testing.assert_array_equal(transfer_set.chunks, np.repeat([0, 1], 80))
    assert transfer_set.method == "data_impressions" and transfer_set.config["temperature"] == TAU


def test_class_impressions_reach_high_agreement(mnist_teacher, tmp_path):
    """One-hot targets (Class Impressions, the β → 0 limit) are also reached from noise."""
    targets, classes, betas = map(np.asarray, dirichlet.one_hot_targets(10, 4))
    method = impressions.impressions_method(mnist_teacher, num_steps=50, learning_rate=0.05,
                                            name="class_impressions")
    noise = method.init_fn(jax.random.key(0), jnp.asarray(targets))
    init_agreement = _agreement(np.asarray(mnist_teacher.logits(noise)), targets)
    transfer_set = runner.synthesize(method, mnist_teacher, targets, classes=classes,
                                     betas=betas, seed=0, chunk_size=40, workdir=str(tmp_path))
    final_agreement = _agreement(transfer_set.logits, targets)
    print(f"CI agreement {init_agreement:.3f} -> {final_agreement:.3f}")
    assert init_agreement < 0.3
    assert final_agreement > 0.95
    np.testing.assert_array_equal(transfer_set.betas, np.zeros(40))


def test_pixel_prior_darkens_impressions_and_keeps_agreement(mnist_teacher, mnist_impressions,
                                                             tmp_path):
    """λ‖x‖² (λ = 1e-3) pulls the same 160 DIs to a darker mean pixel than the paper's λ = 0,
    while the teacher still agrees with > 90 % of the targets; λ < 0 is refused."""
    _, plain = mnist_impressions
    method = impressions.impressions_method(mnist_teacher, num_steps=200, pixel_l2=1e-3)
    dark = runner.synthesize(method, mnist_teacher, plain.targets, classes=plain.classes,
                             betas=plain.betas, seed=0, chunk_size=80, workdir=str(tmp_path))
    print(f"mean pixel {plain.images.mean():.3f} (λ = 0) -> {dark.images.mean():.3f}")
    assert dark.images.mean() < plain.images.mean() - 0.1
    assert _agreement(dark.logits, dark.targets) > 0.9
    assert dark.config["pixel_l2"] == 1e-3
    with pytest.raises(ValueError, match="pixel_l2 λ must be ≥ 0"):
        impressions.impressions_method(mnist_teacher, pixel_l2=-1e-3)


def test_l1_prior_makes_the_background_exactly_black(mnist_teacher, mnist_impressions,
                                                     tmp_path):
    """γ‖x‖₁ (γ = 1e-3) drives most pixels of the same 160 DIs to exactly 0, far more than the
    paper's objective does (its saturated noise is about a third 0), while the teacher still
    agrees with > 90 % of the targets; γ < 0 is refused."""
    _, plain = mnist_impressions
    method = impressions.impressions_method(mnist_teacher, num_steps=200, pixel_l1=1e-3)
    sparse = runner.synthesize(method, mnist_teacher, plain.targets, classes=plain.classes,
                               betas=plain.betas, seed=0, chunk_size=80, workdir=str(tmp_path))
    plain_zeros, sparse_zeros = (float(np.mean(images == 0.0))
                                 for images in (plain.images, sparse.images))
    print(f"pixels exactly 0: {plain_zeros:.3f} (γ = 0) -> {sparse_zeros:.3f}")
    assert sparse_zeros > 0.5 and sparse_zeros > plain_zeros + 0.3
    assert _agreement(sparse.logits, sparse.targets) > 0.9
    assert sparse.config["pixel_l1"] == 1e-3
    with pytest.raises(ValueError, match="pixel_l1 γ must be ≥ 0"):
        impressions.impressions_method(mnist_teacher, pixel_l1=-1e-3)


def test_total_variation_of_hand_computed_images():
    """Squared TV sums squared differences of vertical and horizontal neighbours, per image."""
    ramp = jnp.asarray([[0.0, 1.0], [2.0, 4.0]])[None, :, :, None]  # (1, 2, 2, 1)
    # Vertical (0→2, 1→4): 4 + 9; horizontal (0→1, 2→4): 1 + 4.
    np.testing.assert_allclose(losses.total_variation_l2(ramp), [18.0])
    assert float(losses.total_variation_l2(jnp.full((1, 5, 5, 3), 0.7))[0]) == 0.0


def test_tv_prior_smooths_impressions_and_keeps_agreement(mnist_teacher, mnist_impressions,
                                                          tmp_path):
    """μ·TV²(x) (μ = 1e-2) lowers the total variation of the same 160 DIs well below the
    paper's μ = 0, while the teacher still agrees with > 90 % of the targets; μ < 0 is refused."""
    _, plain = mnist_impressions
    method = impressions.impressions_method(mnist_teacher, num_steps=200, tv_l2=1e-2)
    smooth = runner.synthesize(method, mnist_teacher, plain.targets, classes=plain.classes,
                               betas=plain.betas, seed=0, chunk_size=80, workdir=str(tmp_path))
    plain_tv, smooth_tv = (float(losses.total_variation_l2(jnp.asarray(images)).mean())
                           for images in (plain.images, smooth.images))
    print(f"mean TV² {plain_tv:.1f} (μ = 0) -> {smooth_tv:.1f}")
    assert smooth_tv < 0.5 * plain_tv
    assert _agreement(smooth.logits, smooth.targets) > 0.9
    assert smooth.config["tv_l2"] == 1e-2
    with pytest.raises(ValueError, match="tv_l2 μ must be ≥ 0"):
        impressions.impressions_method(mnist_teacher, tv_l2=-1e-3)


def test_jitter_makes_impressions_survive_shifts(mnist_teacher, mnist_impressions, tmp_path):
    """With jitter J = 2 the teacher sees each impression shifted anew at every step, so the
    finished DIs, shifted by 2 pixels, still match their targets more closely (lower CE) than
    the paper's unjittered DIs do, and reach > 90 % agreement unshifted; bad J is refused."""
    _, plain = mnist_impressions
    method = impressions.impressions_method(mnist_teacher, num_steps=200, jitter=2)
    jittered = runner.synthesize(method, mnist_teacher, plain.targets, classes=plain.classes,
                                 betas=plain.betas, seed=0, chunk_size=80, workdir=str(tmp_path))

    def shifted_ce(transfer_set):
        shifted = jnp.roll(jnp.asarray(transfer_set.images), (2, -2), axis=(1, 2))
        return _soft_ce(mnist_teacher.logits(shifted, mnist_teacher.variables),
                        transfer_set.targets)

    plain_shifted, jittered_shifted = shifted_ce(plain), shifted_ce(jittered)
    print(f"CE to the targets after a (2, -2) shift: {plain_shifted:.3f} (J = 0) -> "
          f"{jittered_shifted:.3f} (J = 2)")
    assert jittered_shifted < plain_shifted
    assert _agreement(jittered.logits, jittered.targets) > 0.9
    assert jittered.config["jitter"] == 2
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="jitter must be a whole number of pixels"):
            impressions.impressions_method(mnist_teacher, jitter=bad)


def test_low_resolution_noise_starts_smooth_and_still_reaches_the_targets(
        mnist_teacher, mnist_impressions, tmp_path):
    """init_resolution R starts each impression from R x R uniform noise resized to 32x32:
    within [0, 1], far smoother than pixel-wise noise, identical to it at R = 32; the
    impressions still reach > 90 % agreement; R outside [1, 32] is refused."""
    _, plain = mnist_impressions
    targets, rng = jnp.asarray(plain.targets), jax.random.key(3)
    pixelwise = impressions.impressions_method(mnist_teacher).init_fn(rng, targets)
    full = impressions.impressions_method(mnist_teacher, init_resolution=32).init_fn(rng, targets)
    method = impressions.impressions_method(mnist_teacher, num_steps=200, init_resolution=8)
    smooth = method.init_fn(rng, targets)
    assert smooth.shape == pixelwise.shape == (len(targets), 32, 32, 1)
    np.testing.assert_array_equal(full, pixelwise)
    assert 0.0 <= float(smooth.min()) and float(smooth.max()) <= 1.0
    assert (float(losses.total_variation_l2(smooth).mean())
            < 0.1 * float(losses.total_variation_l2(pixelwise).mean()))
    transfer_set = runner.synthesize(method, mnist_teacher, plain.targets, classes=plain.classes,
                                     betas=plain.betas, seed=0, chunk_size=80,
                                     workdir=str(tmp_path))
    assert _agreement(transfer_set.logits, transfer_set.targets) > 0.9
    assert transfer_set.config["init_resolution"] == 8
    for bad in (0, 33, 4.0, True):
        with pytest.raises(ValueError, match=r"init_resolution must be a whole number of pixels "
                                             r"in \[1, 32\]"):
            impressions.impressions_method(mnist_teacher, init_resolution=bad)


# --- Resume, devices, NaN, foreign workdirs ---------------------------------------------------


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_bit_identically(random_teacher, tmp_path, monkeypatch):
    """Killed in chunk 1, a rerun skips the finished chunk 0 and ends with exactly the
    TransferSet of an uninterrupted run; a rerun with every chunk on disk computes nothing."""
    targets, classes, betas = _dirichlet_targets(random_teacher, 4)  # 40 rows: 16 + 16 + 8
    method = impressions.impressions_method(random_teacher, num_steps=4)
    kwargs = dict(classes=classes, betas=betas, seed=3, chunk_size=16, steps_per_call=2)
    straight = runner.synthesize(method, random_teacher, targets, workdir=str(tmp_path / "a"),
                                 **kwargs)

    original_check = runner._check_finite
    computed = []

    def interrupt_in_chunk_1(losses, name, chunk, first_step):
        if chunk == 1:
            raise Interrupt
        original_check(losses, name, chunk, first_step)

    def record(losses, name, chunk, first_step):
        computed.append(chunk)
        original_check(losses, name, chunk, first_step)

    workdir = str(tmp_path / "b")
    monkeypatch.setattr(runner, "_check_finite", interrupt_in_chunk_1)
    with pytest.raises(Interrupt):
        runner.synthesize(method, random_teacher, targets, workdir=workdir, **kwargs)
    assert not os.path.exists(os.path.join(workdir, runner.TRANSFER_SET_FILE))

    monkeypatch.setattr(runner, "_check_finite", record)
    resumed = runner.synthesize(method, random_teacher, targets, workdir=workdir, **kwargs)
    assert computed == [1, 1, 2, 2]  # two calls of 2 steps for each unfinished chunk
    for name in ("images", "logits", "targets", "classes", "betas", "chunks"):
        assert np.array_equal(getattr(straight, name), getattr(resumed, name)), name
    np.testing.assert_array_equal(resumed.chunks, np.repeat([0, 1, 2], [16, 16, 8]))

    # All chunks on disk but no final file: reassembled from the chunks alone.
    os.remove(os.path.join(workdir, runner.TRANSFER_SET_FILE))
    computed.clear()
    again = runner.synthesize(method, random_teacher, targets, workdir=workdir, **kwargs)
    assert computed == []
    assert np.array_equal(again.images, straight.images)
    assert np.array_equal(again.logits, straight.logits)


_SHARDED_SYNTHESIS = textwrap.dedent("""
    import sys, jax, numpy as np
    jax.config.update("jax_num_cpu_devices", int(sys.argv[1]))
    from jaxinv import models, train
    from jaxinv.synthesis import dirichlet, impressions, runner
    from jaxinv.teacher import Teacher
    model = models.get_model("lenet5")
    abstract = jax.eval_shape(lambda: train.init_variables(model, jax.random.key(0), (32, 32, 1)))
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: (rng.normal(size=s.shape) / np.sqrt(
        np.prod(s.shape[:-1]) if s.ndim > 1 else 10.0)).astype(s.dtype), abstract)
    teacher = Teacher(model=model, variables=variables, image_shape=(32, 32, 1))
    similarity = dirichlet.class_similarity(teacher.head()[0])
    targets, classes, betas = map(np.asarray, dirichlet.dirichlet_targets(
        jax.random.key(1), similarity, (1.0, 0.1), 4))
    method = impressions.impressions_method(teacher, num_steps=6)
    ts = runner.synthesize(method, teacher, targets[:32], classes=classes[:32],
                           betas=betas[:32], seed=5, chunk_size=16, workdir=sys.argv[2])
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


def _nan_method(teacher: Teacher) -> runner.SynthesisMethod:
    """Pixels of examples aiming at class 0 fall by 0.15 a step; the objective is NaN once
    they are negative (step 4). Examples aiming elsewhere do not move and stay finite."""
    def init_fn(rng, targets):
        del rng
        return jnp.full((targets.shape[0], *teacher.image_shape), 0.5)

    def loss_fn(teacher_variables, images, targets, rng):
        del teacher_variables, rng
        descent = jnp.sum(images) * targets[:, 0].sum()
        return descent + jnp.where(jnp.min(images) < 0, jnp.nan, 0.0)

    return runner.SynthesisMethod(name="nan_method", init_fn=init_fn, loss_fn=loss_fn,
                                  optimizer=optax.sgd(0.15), num_steps=6, project_fn=None)


def test_nan_objective_stops_naming_method_chunk_and_step(random_teacher, tmp_path):
    """A NaN objective raises FloatingPointError with method, chunk and step; the finished
    chunk 0 stays on disk, nothing of chunk 1 is written and no TransferSet is assembled."""
    classes = np.repeat([1, 0], 16)
    targets = np.eye(10, dtype=np.float32)[classes]
    with pytest.raises(FloatingPointError, match=r"nan_method: .*nan in chunk 1 at step 4;"):
        runner.synthesize(_nan_method(random_teacher), random_teacher, targets,
                          classes=classes, betas=np.zeros(32), seed=0, chunk_size=16,
                          workdir=str(tmp_path), steps_per_call=2)
    with checkpoint.Checkpoints(str(tmp_path / "chunks")) as ckpts:
        assert ckpts.all_steps() == [0]
    assert not (tmp_path / runner.TRANSFER_SET_FILE).exists()


def test_workdir_of_another_config_is_refused(random_teacher, tmp_path):
    """Resuming chunks made with another seed or learning rate would mix two runs: refused,
    saying what differs, and the workdir is left as it was."""
    targets, classes, betas = _dirichlet_targets(random_teacher, 2)
    kwargs = dict(classes=classes[:16], betas=betas[:16], chunk_size=16, workdir=str(tmp_path))
    method = impressions.impressions_method(random_teacher, num_steps=2)
    runner.synthesize(method, random_teacher, targets[:16], seed=0, **kwargs)
    before = sorted(os.walk(tmp_path))
    record = json.load(open(tmp_path / "synthesis.json"))
    with pytest.raises(ValueError, match=r"different synthesis run(.|\n)*seed: 0 -> 1"):
        runner.synthesize(method, random_teacher, targets[:16], seed=1, **kwargs)
    other_lr = impressions.impressions_method(random_teacher, num_steps=2, learning_rate=0.01)
    with pytest.raises(ValueError, match="method_config.learning_rate: 0.05 -> 0.01"):
        runner.synthesize(other_lr, random_teacher, targets[:16], seed=0, **kwargs)
    assert sorted(os.walk(tmp_path)) == before
    assert json.load(open(tmp_path / "synthesis.json")) == record


# --- TransferSet ---------------------------------------------------------------------------------


def _transfer_set(n: int = 12) -> TransferSet:
    rng = np.random.default_rng(0)
    targets = rng.dirichlet(np.ones(10), n).astype(np.float32)
    return TransferSet(images=rng.random((n, 8, 8, 1), np.float32),
                       logits=rng.normal(size=(n, 10)).astype(np.float32), targets=targets,
                       classes=targets.argmax(-1).astype(np.int32),
                       betas=np.full(n, 0.1, np.float32), chunks=np.repeat([0, 1], n // 2),
                       method="data_impressions", seed=7,
                       config={"temperature": 20.0, "schedule": "linear", "nested": {"a": [1]}})


def test_transfer_set_roundtrip_without_pickle(tmp_path):
    """save/load keeps every array and the metadata; the file opens with allow_pickle=False."""
    original = _transfer_set()
    path = str(tmp_path / "set.npz")
    original.save(path)
    with np.load(path, allow_pickle=False) as f:
        assert f["images"].dtype == np.float32 and json.loads(str(f["meta"]))["seed"] == 7
    loaded = TransferSet.load(path)
    for name in ("images", "logits", "targets", "classes", "betas", "chunks"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name))
    assert (loaded.method, loaded.seed, loaded.config) == (original.method, 7, original.config)
    assert not [p for p in os.listdir(tmp_path) if "tmp" in p]


def test_transfer_set_subset_and_shape_check(tmp_path):
    """subset keeps rows aligned across arrays; a student of another input shape is refused;
    a file that is not a TransferSet is refused."""
    original = _transfer_set()
    part = original.subset(np.array([5, 0, 11]))
    assert len(part) == 3
    np.testing.assert_array_equal(part.images, original.images[[5, 0, 11]])
    np.testing.assert_array_equal(part.classes, original.classes[[5, 0, 11]])
    np.testing.assert_array_equal(part.chunks, [0, 0, 1])
    assert part.method == original.method and part.seed == original.seed
    original.check_image_shape((8, 8, 1))
    with pytest.raises(ValueError, match=r"shape \(8, 8, 1\) but the student takes \(32, 32, 1\)"):
        original.check_image_shape((32, 32, 1))
    np.savez(tmp_path / "other.npz", images=original.images)
    with pytest.raises(ValueError, match="not a TransferSet file"):
        TransferSet.load(str(tmp_path / "other.npz"))
    with pytest.raises(ValueError, match="logits has 3 rows but there are 12 images"):
        TransferSet(**{**original.__dict__, "logits": original.logits[:3]})


# --- Bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_temperature_must_be_positive(random_teacher, temperature):
    """τ ≤ 0 has no meaning for a softened softmax and is refused up front."""
    with pytest.raises(ValueError, match="temperature τ must be > 0"):
        impressions.impressions_method(random_teacher, temperature=temperature)


def test_chunk_size_must_divide_over_devices(random_teacher, tmp_path):
    """A chunk of 12 cannot be split over the 8 devices: refused before the workdir exists."""
    targets, classes, betas = _dirichlet_targets(random_teacher, 2)
    with pytest.raises(ValueError, match="chunk_size = 12 is not a multiple of the 8 devices"):
        runner.synthesize(impressions.impressions_method(random_teacher, num_steps=2),
                          random_teacher, targets, classes=classes, betas=betas, seed=0,
                          chunk_size=12, workdir=str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_micro_batch_changes_only_float_rounding(random_teacher, tmp_path):
    """Gradients computed 4 examples at a time or 64 at a time give the same TransferSet, up to
    float rounding (XLA blocks a convolution differently for different batch sizes)."""
    targets, classes, betas = _dirichlet_targets(random_teacher, 4)
    method = impressions.impressions_method(random_teacher, num_steps=4)
    sets = [runner.synthesize(method, random_teacher, targets, classes=classes, betas=betas,
                              seed=3, chunk_size=40, workdir=str(tmp_path / str(micro)),
                              micro_batch=micro) for micro in (4, 64)]
    np.testing.assert_allclose(sets[0].images, sets[1].images, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sets[0].logits, sets[1].logits, rtol=1e-4, atol=1e-4)


def _group_spread_method(group_size: int) -> runner.SynthesisMethod:
    """Each member's mean pixel is pulled to its target's first entry, and the group's mean of
    means to 0.5, so the members of a group move together."""
    def init_fn(rng, targets):
        return jax.random.uniform(rng, (targets.shape[0], 32, 32, 1))

    def loss_fn(teacher_variables, images, targets, rng):
        del teacher_variables, rng
        means = images.mean(axis=(1, 2, 3))
        return jnp.sum((means - targets[:, 0]) ** 2) + (means.mean() - 0.5) ** 2

    # SGD at the pixel count: every pixel of an image gets the same gradient, so the step on an
    # image's mean is 2 (m - t) + 2 (group mean - 0.5) / g.
    return runner.SynthesisMethod(name="group_spread", init_fn=init_fn, loss_fn=loss_fn,
                                  optimizer=optax.sgd(0.1 * 32 * 32), num_steps=3,
                                  project_fn=None, group_size=group_size)


def test_groups_are_optimised_jointly_and_must_not_span_devices(random_teacher, tmp_path):
    """Groups of 2 on 8 devices follow the coupled dynamics worked out by hand, even with a
    micro-batch smaller than a group; 4 groups cannot be split over 8 devices and are refused
    before anything is written."""
    targets, classes, betas = (x[:16] for x in _dirichlet_targets(random_teacher, 2))
    kwargs = dict(classes=classes, betas=betas, seed=0, chunk_size=16)
    method = _group_spread_method(2)
    result = runner.synthesize(method, random_teacher, targets, workdir=str(tmp_path / "g2"),
                               micro_batch=1, **kwargs)
    init_rng, _ = jax.random.split(jax.random.fold_in(jax.random.key(0), 0))
    means = np.asarray(method.init_fn(init_rng, targets)).mean(axis=(1, 2, 3))
    for _ in range(method.num_steps):
        group_means = means.reshape(-1, 2).mean(axis=1).repeat(2)
        means = means - 0.1 * (2 * (means - targets[:, 0]) + (group_means - 0.5))
    np.testing.assert_allclose(result.images.mean(axis=(1, 2, 3)), means, atol=1e-5)

    with pytest.raises(ValueError, match=r"chunk_size / group_size \(16 / 4\) = 4"):
        runner.synthesize(_group_spread_method(4), random_teacher, targets,
                          workdir=str(tmp_path / "g4"), **kwargs)
    assert not (tmp_path / "g4").exists()


def test_micro_batch_below_one_is_refused(random_teacher, tmp_path):
    """micro_batch = 0 would loop over nothing: refused before the workdir exists."""
    targets, classes, betas = _dirichlet_targets(random_teacher, 2)
    with pytest.raises(ValueError, match="micro_batch must be ≥ 1, got 0"):
        runner.synthesize(impressions.impressions_method(random_teacher, num_steps=2),
                          random_teacher, targets[:16], classes=classes[:16], betas=betas[:16],
                          seed=0, chunk_size=16, workdir=str(tmp_path / "w"), micro_batch=0)
    assert not (tmp_path / "w").exists()
