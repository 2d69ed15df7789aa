"""The `jaxinv` command: version and help, overrides checked against the config with the
closest key suggested, one-line errors with exit status 2, bundled configs found from any
directory, and Ctrl-C answered with how to resume."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

import jaxinv
from jaxinv import cli, report

SMOKE = "zskd.py:smoke"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"jaxinv {jaxinv.__version__}"


def test_run_help_explains_config_overrides(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--config." in out and "--workdir" in out and "zskd.py" in out


def _error_line(capsys) -> str:
    """The whole of stderr, which must be one `jaxinv: error:` line."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxinv: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("override, message", [
    # A misspelt key: the closest real one is suggested.
    ("--config.distill.num_step=5", "Did you mean --config.distill.num_steps"),
    ("--config.synthesis.temprature=5.0", "--config.synthesis.temperature"),
    # A value of the wrong type for the field.
    ("--config.distill.num_steps=many", "--config.distill.num_steps=many"),
    ("--config.synthesis.betas=oops", "--config.synthesis.betas=oops"),
    # Values the pipeline refuses.
    ("--config.synthesis.method=deep_dream", "not a jaxinv synthesis method; choose from"),
    ("--config.dataset=imagenet", "Unknown dataset 'imagenet'"),
    ("--config.distill.student=resnet1000", "resnet1000"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(override, message, tmp_path,
                                                           capsys):
    workdir = tmp_path / "run"
    assert cli.main(["run", SMOKE, "--workdir", str(workdir), override]) == 2
    assert message in _error_line(capsys)
    assert not workdir.exists()


def test_override_keeps_the_fields_type():
    config = cli.experiment_configs.load_config(SMOKE)
    cli.apply_override(config, "distill.optimizer.learning_rate", "1")  # int into a float
    assert config.distill.optimizer.learning_rate == 1.0
    assert isinstance(config.distill.optimizer.learning_rate, float)
    cli.apply_override(config, "distill.optimizer.schedule", "linear")  # a bare word
    assert config.distill.optimizer.schedule == "linear"
    cli.apply_override(config, "synthesis.betas", "(1.0, 0.5)")
    assert tuple(config.synthesis.betas) == (1.0, 0.5)
    with pytest.raises(ValueError, match="Did you mean --config.distill.batch_size"):
        cli.apply_override(config, "distill.batchsize", "8")
    with pytest.raises(ValueError, match="--config.distill.num_steps=1.5"):
        cli.apply_override(config, "distill.num_steps", "1.5")


def test_missing_config_file_and_missing_value(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert cli.main(["run", "nope.py:smoke", "--workdir", str(workdir)]) == 2
    assert "not found" in _error_line(capsys) and not workdir.exists()
    with pytest.raises(SystemExit, match="needs a value, as in --config.distill.num_steps=VALUE"):
        cli.main(["run", SMOKE, "--workdir", str(workdir), "--config.distill.num_steps"])
    assert not workdir.exists()


@pytest.mark.slow
def test_bundled_config_runs_from_any_directory(mnist_teacher, teacher_store, data_dir,
                                                tmp_path, monkeypatch, capsys):
    """`jaxinv run zskd.py:smoke` in a folder without experiments/ finds the bundled config,
    runs the pipeline with the store's teacher, prints the results table and writes
    results.json under --workdir."""
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / "zskd.py").exists()
    assert cli.main(["run", SMOKE, "--workdir", "w", "--config.distill.num_steps=16",
                     "--config.distill.checkpoint_every=8"]) == 0
    out = capsys.readouterr().out
    results = report.read_json(str(tmp_path / "w" / "results.json"))
    assert results["dataset"] == "mnist" and results["num_transfer_images"] == 160
    assert os.path.dirname(results["teacher"]) == teacher_store
    assert "distill.student_test_accuracy" in out and os.path.join("w", "results.json") in out


@pytest.mark.slow
def test_ctrl_c_prints_one_line_saying_to_rerun(mnist_teacher, teacher_store, data_dir,
                                                tmp_path):
    """SIGINT during a run (after its config.json is written) exits 130 with one line that says
    to rerun the command, and no traceback."""
    workdir = tmp_path / "run"
    env = {**os.environ, "JAXINV_DATA_DIR": data_dir, "JAXINV_TEACHER_STORE": teacher_store}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxinv.cli", "run", SMOKE, "--workdir", str(workdir),
         "--config.synthesis.num_steps=2000", "--config.synthesis.steps_per_call=10"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and Python
        # then never installs its handler: give the run the default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not (workdir / "config.json").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never wrote its config.json"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    interrupted = [line for line in err.splitlines() if "interrupted" in line]
    assert len(interrupted) == 1, err
    assert "rerun the same command to resume" in interrupted[0]
    assert str(workdir) in interrupted[0]


def test_ctrl_c_inside_asyncio_run_reaches_the_caller_and_the_handler_is_restored():
    """asyncio.run, left to itself, turns SIGINT into a cancellation that code catching
    CancelledError swallows (Orbax's checkpointing runs inside asyncio.run)."""
    async def swallow_the_cancellation():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            pass

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), cli._interrupt_directly():
            asyncio.run(swallow_the_cancellation())
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
