"""The stage ledger: a rerun reports the seconds an earlier process spent on a finished stage,
and names a stage it resumes, whose seconds are then only a lower bound."""

import json
import os
import time

import pytest

from jaxinv import cli, stage_times, zskd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "experiments", "configs", "zskd.py") + ":smoke"


class Interrupted(Exception):
    """Stands in for a process killed inside a stage."""


def test_finished_stages_keep_their_seconds_and_begun_ones_are_named(tmp_path):
    first = stage_times.StageTimes(str(tmp_path))
    with first.stage("synthesis"):
        time.sleep(0.05)
    with pytest.raises(Interrupted), first.stage("distill"):
        raise Interrupted
    assert first.resumed == [] and set(first.seconds) == {"synthesis"}

    rerun = stage_times.StageTimes(str(tmp_path))
    with rerun.stage("synthesis"):
        pass  # a rerun only loads the finished stage
    with rerun.stage("distill"):
        pass
    assert rerun.seconds["synthesis"] == first.seconds["synthesis"] >= 0.05
    assert rerun.resumed == ["distill"]
    assert set(rerun.seconds) == {"synthesis", "distill"}
    saved = json.loads((tmp_path / stage_times.FILE).read_text())
    assert saved["seconds"] == rerun.seconds


def test_zskd_run_stopped_while_distilling_reports_the_resumed_stage(
        session_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    workdir = str(tmp_path / "run")

    def stop(*args, **kwargs):
        raise Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(zskd, "distill_students", stop)
        with pytest.raises(Interrupted):
            cli.main(["run", SMOKE, "--workdir", workdir])
    first = json.loads(open(os.path.join(workdir, stage_times.FILE)).read())
    assert set(first["seconds"]) == {"teacher", "synthesis"}
    assert first["started"] == ["teacher", "synthesis", "distill"]

    capsys.readouterr()
    assert cli.main(["run", SMOKE, "--workdir", workdir]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["resumed_stages"] == ["distill"]
    for stage in ("teacher", "synthesis"):
        assert results["stage_seconds"][stage] == first["seconds"][stage]
    assert results["stage_seconds"]["distill"] > 0
