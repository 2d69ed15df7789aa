"""The contract every synthesis method passes, as optax's `_common_test.py` for optimisers.

Every method registered in `jaxinv.synthesis`, run with its `smoke_config`, and the two
test-only methods of `contract_methods.py` (a generator instead of pixels; a memory bank, a
per-round generator and a student carried across rounds) must: make images of the teacher's
shape in [0, 1] with the teacher's logits; reach the targets far above chance; give the same
result twice; resume after an interruption bit-identically; and give the same result on 1 and
on 8 devices.
"""

import os
import subprocess
import sys

import contract_methods
import jax
import numpy as np
import pytest

from jaxinv import checkpoint, synthesis

CASES = sorted(contract_methods.all_cases())


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def cases():
    return contract_methods.all_cases()


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory):
    return contract_methods.run_all(str(tmp_path_factory.mktemp("straight")))


def test_the_registry_holds_every_method_module():
    assert "impressions" in synthesis.available_methods()
    assert {"test_generator", "test_bank", "adaptive_deepinversion",
            *synthesis.available_methods()} == set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_images_logits_and_targets(name, cases, straight_runs):
    teacher = cases[name][-1]
    transfer_set = straight_runs[name]
    num = len(transfer_set)
    assert transfer_set.images.shape == (num, *teacher.image_shape)
    assert transfer_set.logits.shape == (num, teacher.num_classes)
    assert transfer_set.images.min() >= 0.0 and transfer_set.images.max() <= 1.0
    np.testing.assert_allclose(transfer_set.logits, np.asarray(teacher.logits(
        transfer_set.images)), rtol=1e-4, atol=1e-4)
    agreement = np.mean(transfer_set.logits.argmax(-1) == transfer_set.targets.argmax(-1))
    assert agreement >= 0.5, agreement  # chance is 0.1
    assert not np.array_equal(transfer_set.images[0], transfer_set.images[1])


@pytest.mark.parametrize("name", CASES)
def test_same_seed_same_result(name, cases, straight_runs, tmp_path):
    method, inputs, metadata, kwargs, teacher = cases[name]
    again = synthesis.synthesize(method, teacher, inputs, metadata=metadata,
                                 workdir=str(tmp_path), **kwargs)
    np.testing.assert_array_equal(again.images, straight_runs[name].images)


@pytest.mark.parametrize("name", CASES)
def test_interrupted_run_resumes_bit_identically(name, cases, straight_runs, tmp_path,
                                                 monkeypatch):
    """Stopped right after its first checkpoint (a chunk, or a round's state), a rerun in the
    same workdir ends with exactly the TransferSet of an uninterrupted run."""
    method, inputs, metadata, kwargs, teacher = cases[name]
    original_save = checkpoint.Checkpoints.save
    saves = []

    def save_then_stop(self, step, state, meta=None):
        original_save(self, step, state, meta)
        saves.append(step)
        self.wait()
        raise Interrupt

    monkeypatch.setattr(checkpoint.Checkpoints, "save", save_then_stop)
    with pytest.raises(Interrupt):
        synthesis.synthesize(method, teacher, inputs, metadata=metadata,
                             workdir=str(tmp_path), **kwargs)
    assert not os.path.exists(tmp_path / synthesis.TRANSFER_SET_FILE)
    monkeypatch.setattr(checkpoint.Checkpoints, "save", original_save)
    resumed = synthesis.synthesize(method, teacher, inputs, metadata=metadata,
                                   workdir=str(tmp_path), **kwargs)
    np.testing.assert_array_equal(resumed.images, straight_runs[name].images)
    np.testing.assert_array_equal(resumed.logits, straight_runs[name].logits)


def test_one_and_eight_devices_agree(tmp_path):
    """Each case in a fresh process with 1 and with 8 simulated devices agrees to float
    rounding: per-example methods to 1e-5 (a device's micro-batch is vectorised differently),
    methods that reduce over the sharded axis, through many steps, to 2e-3, and SpaceshipNet,
    whose generator and student train over three rounds of convolutions that split their sums
    by thread count, to 1e-2."""
    script = os.path.join(os.path.dirname(__file__), "contract_methods.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    outputs = {}
    for devices in (1, 8):
        proc = subprocess.run([sys.executable, script, str(devices), str(tmp_path / str(devices)),
                               str(tmp_path / f"{devices}.npz")], capture_output=True,
                              text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip().splitlines()[-1] == str(devices)
        with np.load(tmp_path / f"{devices}.npz") as f:
            outputs[devices] = dict(f)
    for key in outputs[1]:
        tolerance = (1e-5 if key.startswith("impressions.")
                     else 1e-2 if key.startswith("spaceshipnet.") else 2e-3)
        np.testing.assert_allclose(outputs[1][key], outputs[8][key], atol=tolerance,
                                   err_msg=key)


def test_phases_run_as_host_loops_match_the_scanned_round():
    """On CPU the rounds driver runs a phased round as one jitted call per phase step (XLA:CPU
    is slow at weight gradients inside loops); it must be the same round as `step`'s scans."""
    from jaxinv import parallel
    from jaxinv.synthesis import rounds

    teacher = contract_methods.random_teacher()
    method = contract_methods.bank_method(teacher)
    targets = jax.nn.one_hot(np.arange(contract_methods.NUM_EXAMPLES) % 10, 10)
    inputs = parallel.replicate({"targets": np.asarray(targets)})
    variables = parallel.replicate(teacher.variables)
    ends = []
    for run_round in (rounds._round, rounds._run_round):
        state = rounds._init(method, inputs, jax.random.key(0))
        for index in range(2):
            state, metrics = run_round(method, variables, state, jax.random.key(index))
        ends.append((jax.device_get(state), jax.device_get(metrics)))
    (scanned, scanned_metrics), (looped, looped_metrics) = ends
    assert set(scanned_metrics) == set(looped_metrics) == {"loss", "student_loss"}
    assert int(looped["round"]) == 2
    assert np.abs(looped["bank"][8:]).max() == 0 and np.abs(looped["bank"][:8]).max() > 0
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-3),
                 scanned, looped)
