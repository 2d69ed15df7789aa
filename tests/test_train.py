"""Supervised training: it learns on real MNIST, resumes exactly, and shards like one device."""

import json
import os
import subprocess
import sys
import textwrap

import chex
import jax
import numpy as np
import pytest

from jaxinv import config_files, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHER_CONFIG = os.path.join(REPO, "experiments", "configs", "teacher.py")


def smoke_config(**overrides):
    config = config_files.load_config(f"{TEACHER_CONFIG}:smoke")
    for key, value in overrides.items():
        config[key] = value
    return config


def test_short_run_learns_real_mnist(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    results = train.train_and_evaluate(smoke_config(), str(tmp_path))
    # 40 steps on 512 images: chance is 10 %, a LeNet-5 that learns reaches well above 60 %.
    assert results["test_accuracy"] > 60.0
    for name in ("config.json", "metrics.jsonl", "results.json", "checkpoints"):
        assert os.path.exists(tmp_path / name)
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "metrics.jsonl")]
    assert losses[-1] < losses[0]


class Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_identical_params(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    config = smoke_config(num_steps=30, checkpoint_every=10)
    reference = train.train_and_evaluate(config, str(tmp_path / "straight"))

    def crash_at_step_25(step, _):
        if step == 25:
            raise Interrupt

    with pytest.raises(Interrupt):
        train.train_and_evaluate(config, str(tmp_path / "resumed"),
                                 step_callback=crash_at_step_25)
    resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert resumed["resumed"] and not reference["resumed"]
    _, straight_vars, _ = train.load_trained(str(tmp_path / "straight"))
    _, resumed_vars, _ = train.load_trained(str(tmp_path / "resumed"))
    chex.assert_trees_all_equal(jax.device_get(straight_vars), jax.device_get(resumed_vars))


_SHARDED_RUN = textwrap.dedent("""
    import sys, jax, numpy as np
    jax.config.update("jax_num_cpu_devices", int(sys.argv[1]))
    from jaxinv import config_files, train
    config = config_files.load_config(sys.argv[2] + ":smoke")
    config.num_steps = 12
    train.train_and_evaluate(config, sys.argv[3])
    _, variables, _ = train.load_trained(sys.argv[3])
    leaves = jax.tree.leaves(jax.device_get(variables))
    np.savez(sys.argv[4], *leaves)
    print(jax.device_count())
""")


def test_eight_simulated_devices_match_one(tmp_path, data_dir):
    env = {**os.environ, "JAXINV_DATA_DIR": data_dir}
    params = {}
    for devices in (1, 8):
        out = tmp_path / f"params_{devices}.npz"
        proc = subprocess.run(
            [sys.executable, "-c", _SHARDED_RUN, str(devices), TEACHER_CONFIG,
             str(tmp_path / f"run_{devices}"), str(out)],
            env=env, capture_output=True, text=True, check=True)
        assert proc.stdout.strip().splitlines()[-1] == str(devices)
        with np.load(out) as f:
            params[devices] = [f[k] for k in sorted(f.files, key=lambda k: int(k[4:]))]
    # The global batch and its gradient are the same; only the order of the cross-device sum
    # differs, so agreement is to float32 rounding, not bit-for-bit.
    for one, eight in zip(params[1], params[8], strict=True):
        np.testing.assert_allclose(one, eight, rtol=1e-4, atol=1e-5)


def test_bad_input_leaves_no_workdir(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    with pytest.raises(ValueError, match="Unknown model 'lenet9'"):
        train.train_and_evaluate(smoke_config(model="lenet9"), str(tmp_path / "a"))
    with pytest.raises(ValueError, match="mnistt"):
        train.train_and_evaluate(smoke_config(dataset="mnistt"), str(tmp_path / "b"))
    mixed = smoke_config()
    mixed.augment.mixup = 1.0
    with pytest.raises(ValueError, match="augment.mixup=0 to train on labels"):
        train.train_and_evaluate(mixed, str(tmp_path / "d"))
    monkeypatch.setenv("JAXINV_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train.train_and_evaluate(smoke_config(), str(tmp_path / "c"))
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_workdir_of_another_model_is_refused(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    train.train_and_evaluate(smoke_config(num_steps=8), str(tmp_path))
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    with pytest.raises(ValueError, match="model: 'lenet5' -> 'lenet5_half'"):
        train.train_and_evaluate(smoke_config(num_steps=8, model="lenet5_half"), str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before


def test_checkpoint_of_another_model_is_refused(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    train.train_and_evaluate(smoke_config(num_steps=8), str(tmp_path))
    config = json.load(open(tmp_path / "config.json"))
    config["model"] = "lenet5_half"  # as if config.json were edited by hand
    json.dump(config, open(tmp_path / "config.json", "w"))
    with pytest.raises(ValueError, match="does not fit the current run"):
        train.load_trained(str(tmp_path))


def test_optimizer_rejects_bad_settings():
    config = smoke_config()
    config.optimizer.learning_rate = -1.0
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        train.make_optimizer(config.optimizer, 10)
    config.optimizer.learning_rate = 1e-3
    config.optimizer.name = "adagrad9"
    with pytest.raises(ValueError, match="Unknown optimizer.name"):
        train.make_optimizer(config.optimizer, 10)
