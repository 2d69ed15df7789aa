"""The `jaxinv` command end to end, on the smoke configs."""

import json
import os
import subprocess
import sys

import pytest

from jaxinv import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def jaxinv(*args, data_dir):
    env = {**os.environ, "JAXINV_DATA_DIR": data_dir}
    return subprocess.run([sys.executable, "-m", "jaxinv.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True)


def test_train_smoke_config_end_to_end(tmp_path, data_dir):
    workdir = tmp_path / "teacher"
    proc = jaxinv("train", "experiments/configs/teacher.py:smoke", "--workdir", str(workdir),
                  "--config.num_steps=16", "--config.checkpoint_every=8", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert results["num_steps"] == 16 and results["test_accuracy"] > 20.0
    assert json.load(open(workdir / "config.json"))["num_steps"] == 16
    # A rerun finds the finished checkpoint and resumes instead of starting over.
    again = jaxinv("train", "experiments/configs/teacher.py:smoke", "--workdir", str(workdir),
                   "--config.num_steps=16", "--config.checkpoint_every=8", data_dir=data_dir)
    assert again.returncode == 0 and json.loads(again.stdout)["resumed"] is True


def test_unknown_config_key_is_rejected_before_anything_is_written(tmp_path, data_dir,
                                                                     capsys):
    status = cli.main(["train", "experiments/configs/teacher.py:smoke", "--workdir",
                       str(tmp_path / "w"), "--config.num_stepz=3"])
    assert status == 2
    assert "num_stepz: no such config key" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("spec, message", [
    ("experiments/configs/nope.py", "not found"),
    ("experiments/configs/teacher.py:svhn", "Unknown teacher config"),
])
def test_bad_config_file(tmp_path, spec, message, capsys):
    assert cli.main(["train", os.path.join(REPO, spec), "--workdir", str(tmp_path / "w")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
