"""Runs are never silently wrong, fail before they write, survive damaged files and a second
process, and say what happened (issue: reliability)."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxinv import cli, data, pipeline, synthesis, workdir
from jaxinv.synthesis import transfer_set as transfer_set_lib


def _run_cli(args, capsys):
    status = cli.main(args)
    return status, capsys.readouterr().err


def test_settings_chosen_for_another_dataset_are_refused(smoke_config_of, tmp_path):
    config = smoke_config_of("zskd.py:smoke")
    config.dataset = "usps"
    with pytest.raises(ValueError, match="chosen for mnist.*zskd.py:usps.*tuned_for=usps"):
        pipeline.check_config(config)
    config.tuned_for = "usps"  # the explicit way to run MNIST's settings on USPS
    pipeline.check_config(config)
    assert "usps_lenet5_" in pipeline.teacher_store_path(pipeline.teacher_training_config(config))


def test_a_config_of_the_other_command_gets_one_clear_message(tmp_path, capsys):
    status, err = _run_cli(["train", "zskd.py:smoke", "--workdir", str(tmp_path / "a")], capsys)
    assert status == 2 and "not a `jaxinv train` config" in err and "jaxinv run" in err
    status, err = _run_cli(["run", "teacher.py:smoke", "--workdir", str(tmp_path / "b")], capsys)
    assert status == 2 and "not a pipeline config" in err and "jaxinv train" in err
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


def test_a_distillation_batch_larger_than_the_transfer_set_is_refused_before_writing(
        tmp_path, capsys):
    status, err = _run_cli(["run", "zskd.py:smoke", "--workdir", str(tmp_path / "w"),
                            "--config.synthesis.num_per_class=4",
                            "--config.distill.batch_size=64"], capsys)
    assert status == 2 and "exceeds the 40" in err
    assert not os.path.exists(tmp_path / "w")


def test_a_failed_start_does_not_block_a_corrected_command(smoke_config_of, tmp_path):
    config = smoke_config_of("zskd.py:smoke")
    workdir.open_workdir(str(tmp_path), config)  # a start that stopped before any stage wrote
    os.makedirs(tmp_path / "synthesis" / "chunks")
    corrected = smoke_config_of("zskd.py:smoke")
    corrected.synthesis.num_steps = 10
    assert not workdir.open_workdir(str(tmp_path), corrected)
    assert workdir.read_record(str(tmp_path / "config.json"))["synthesis"]["num_steps"] == 10
    # Once a stage has written a file, another config is refused.
    (tmp_path / "synthesis" / "synthesis.json").write_text("{}")
    with pytest.raises(ValueError, match="(?s)different config.*num_steps: 10 -> 20"):
        workdir.open_workdir(str(tmp_path), smoke_config_of("zskd.py:smoke"))


def test_a_damaged_config_json_is_named(smoke_config_of, tmp_path):
    workdir.open_workdir(str(tmp_path), smoke_config_of("zskd.py:smoke"))
    path = tmp_path / "config.json"
    path.write_text(path.read_text()[:40])
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ValueError, match=f"{path} is damaged.*delete it"):
        workdir.open_workdir(str(tmp_path), smoke_config_of("zskd.py:smoke"))


def test_a_damaged_chunk_is_named_and_recomputed_once_deleted(mnist_impressions, mnist_teacher,
                                                               tmp_path):
    """A truncated chunk checkpoint: one message naming it; deleting it recomputes it."""
    method, made = mnist_impressions
    inputs = {"targets": made.targets}
    metadata = {"class": made.metadata["class"], "beta": made.metadata["beta"]}
    kwargs = dict(metadata=metadata, seed=0, chunk_size=80)
    source = synthesis.synthesize(method, mnist_teacher, inputs, workdir=str(tmp_path / "a"),
                                  **kwargs)
    os.remove(tmp_path / "a" / synthesis.TRANSFER_SET_FILE)
    for root, _, files in os.walk(tmp_path / "a" / "chunks" / "1" / "state"):
        for name in files:
            if os.path.basename(root) == "d":
                with open(os.path.join(root, name), "r+b") as f:
                    f.truncate(16)
    with pytest.raises(ValueError, match="chunks/1 is damaged.*Delete .*chunks/1 and rerun"):
        synthesis.synthesize(method, mnist_teacher, inputs, workdir=str(tmp_path / "a"), **kwargs)
    shutil.rmtree(tmp_path / "a" / "chunks" / "1")
    again = synthesis.synthesize(method, mnist_teacher, inputs, workdir=str(tmp_path / "a"),
                                 **kwargs)
    np.testing.assert_array_equal(again.images, source.images)


def test_a_truncated_transfer_set_is_named(mnist_impressions, tmp_path):
    _, made = mnist_impressions
    path = tmp_path / "transfer_set.npz"
    made.save(str(path))
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(transfer_set_lib.DamagedFileError, match=f"{path} is damaged"):
        transfer_set_lib.TransferSet.load(str(path))


def test_random_bytes_in_a_dataset_file_are_not_a_valid_npz(tmp_path):
    (tmp_path / "usps.npz").write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(ValueError, match="usps.npz is not a valid .npz file"):
        data.load_dataset("usps", "train", data_dir=str(tmp_path))


_HOLD_LOCK = """
import sys, time
from jaxinv import workdir
with workdir.locked(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_process_on_a_workdir_is_refused_naming_the_holder(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(tmp_path / "w")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        status, err = _run_cli(["run", "zskd.py:smoke", "--workdir", str(tmp_path / "w")],
                               capsys)
        assert status == 2 and f"in use by another jaxinv process (pid {holder.pid})" in err
        assert os.listdir(tmp_path / "w") == [workdir.LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
    with workdir.locked(str(tmp_path / "w")):  # released with its holder
        pass


def test_teacher_store_waits_for_the_process_training_a_teacher(tmp_path):
    """Two processes asking for one teacher: the second waits for the first's lock."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK.replace("60", "2"),
                               str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    start = time.monotonic()
    with workdir.locked(str(tmp_path), wait=True):
        waited = time.monotonic() - start
    holder.wait()
    assert holder.returncode == 0 and waited > 0.5


@pytest.mark.slow
def test_an_installed_wheel_carries_the_bundled_configs(tmp_path):
    """`pip install` of the wheel puts the configs where `jaxinv run zskd.py:...` finds them
    from any directory."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", repo, "-w",
                    str(tmp_path / "wheel")], check=True, cwd=tmp_path, timeout=600)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages",
                    str(tmp_path / "venv")], check=True, timeout=300)
    python = str(tmp_path / "venv" / "bin" / "python")
    wheel = next((tmp_path / "wheel").glob("jaxinv-*.whl"))
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   timeout=600)
    found = subprocess.run(
        [python, "-c", "from jaxinv import experiment_configs as e; "
         "print(e.resolve('zskd.py')); print(e.load_config('zskd.py:smoke').dataset)"],
        capture_output=True, text=True, check=True, cwd=tmp_path, timeout=300).stdout.split()
    assert found == [str(tmp_path / "venv" / "share" / "jaxinv" / "experiments" / "configs"
                         / "zskd.py"), "mnist"]


def test_a_pipeline_run_given_as_teacher_workdir_points_to_its_teacher(smoke_config_of, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text('{"teacher": "runs/teachers/mnist_lenet5_x"}')
    config = smoke_config_of("zskd.py:smoke")
    config.teacher_workdir = str(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="pipeline run; the teacher it used is at "
                                                "runs/teachers/mnist_lenet5_x"):
        pipeline.check_config(config)
