"""`jaxinv run experiments/configs/zskd.py:smoke`: teacher → Data Impressions → student → report,
resumed on rerun, refused for a changed config, and bad input refused before anything is written."""

import json
import os
import statistics
import time

import pytest

from jaxinv import cli, config_files
from jaxinv import workdir as workdir_lib
from jaxinv.synthesis import impressions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "experiments", "configs", "zskd.py") + ":smoke"
RESULT_KEYS = {"dataset", "test_note", "teacher_test_accuracy", "zskd_student_test_accuracy",
               "num_impressions", "method", "teacher_target_agreement", "paper",
               "stage_seconds", "similarity_check", "target_argmax_is_drawn_class"}


def _tree(workdir: str) -> dict[str, float]:
    """Every file under `workdir` with its modification time."""
    return {os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
            for root, _, names in os.walk(workdir) for name in names}


@pytest.fixture(scope="module")
def smoke_run(session_data_dir, tmp_path_factory):
    """One end-to-end smoke run: (workdir, results.json contents, wall seconds)."""
    workdir = str(tmp_path_factory.mktemp("zskd") / "run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXINV_DATA_DIR", session_data_dir)
        start = time.perf_counter()
        status = cli.main(["run", SMOKE, "--workdir", workdir])
        seconds = time.perf_counter() - start
    assert status == 0
    with open(os.path.join(workdir, "results.json")) as f:
        return workdir, json.load(f), seconds


def test_smoke_run_writes_results_and_figures(smoke_run):
    """results.json holds the ZSKD numbers; the similarity heatmap and impression grid exist."""
    workdir, results, _ = smoke_run
    assert set(results) == RESULT_KEYS
    assert results["method"] == "data_impressions" and results["dataset"] == "mnist"
    assert results["num_impressions"] == 160  # 10 classes x 16
    assert set(results["stage_seconds"]) == {"teacher", "synthesis", "distill"}
    assert 0.0 <= results["zskd_student_test_accuracy"] <= 100.0
    # Even 20 synthesis steps pull the teacher's argmax towards the targets (chance: 10 %).
    assert results["teacher_target_agreement"] > 0.5
    for part in ("off_diagonal", "whole_matrix"):
        assert set(results["similarity_check"][part]) == {"pearson", "spearman"}
    for name in ("similarity.png", "impressions.png"):
        with open(os.path.join(workdir, "figures", name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    for sub in ("teacher/results.json", "synthesis/transfer_set.npz", "student/results.json",
                "config.json"):
        assert os.path.exists(os.path.join(workdir, sub)), sub


def test_rerun_resumes_with_same_results(smoke_run, session_data_dir, monkeypatch, capsys):
    """A rerun of a finished workdir redoes nothing: it reports the stored results, timings
    included, and touches no file."""
    workdir, results, seconds = smoke_run
    before = _tree(workdir)
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    capsys.readouterr()
    start = time.perf_counter()
    assert cli.main(["run", SMOKE, "--workdir", workdir]) == 0
    rerun_seconds = time.perf_counter() - start
    again = json.loads(capsys.readouterr().out)
    print(f"zskd smoke: first run {seconds:.1f} s, rerun {rerun_seconds:.1f} s")
    assert again == results
    assert rerun_seconds < seconds
    assert _tree(workdir) == before


def test_rerun_with_other_seed_is_refused(smoke_run, session_data_dir, monkeypatch, capsys):
    """--config.synthesis.seed=1 in a workdir made with seed 0 exits 2, says what differs and
    writes nothing."""
    workdir, _, _ = smoke_run
    before = _tree(workdir)
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    status = cli.main(["run", SMOKE, "--workdir", workdir, "--config.synthesis.seed=1"])
    err = capsys.readouterr().err
    assert status == 2
    assert "holds a run with a different config" in err and "synthesis.seed: 0 -> 1" in err
    assert _tree(workdir) == before


def test_several_seeds_report_their_spread(smoke_run, session_data_dir, tmp_path,
                                            monkeypatch, capsys):
    """With distill.num_seeds=3 the first student is the one-seed run's, and results add each
    seed's accuracy with their mean, sample sd and range."""
    _, one_seed, _ = smoke_run
    workdir = str(tmp_path / "seeds")
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    capsys.readouterr()
    assert cli.main(["run", SMOKE, "--workdir", workdir, "--config.distill.num_seeds=3"]) == 0
    results = json.loads(capsys.readouterr().out)
    spread = results["zskd_student_seeds"]
    assert spread["seeds"] == [0, 1, 2]
    accuracies = spread["test_accuracies"]
    assert accuracies[0] == results["zskd_student_test_accuracy"]
    assert accuracies[0] == one_seed["zskd_student_test_accuracy"]
    assert spread["mean"] == pytest.approx(sum(accuracies) / 3)
    assert spread["sd"] == pytest.approx(statistics.stdev(accuracies))
    assert (spread["min"], spread["max"]) == (min(accuracies), max(accuracies))
    # Different seeds train different students (the smoke students are far from converged).
    assert len(set(accuracies)) > 1
    for sub in ("student", "student_seed1", "student_seed2"):
        assert os.path.exists(os.path.join(workdir, sub, "results.json")), sub


def test_impressions_reused_from_a_finished_run(smoke_run, session_data_dir, tmp_path,
                                                monkeypatch, capsys):
    """synthesis.from_workdir distils from another run's impressions without synthesising: with
    that run's teacher and distillation settings it gives the very same student."""
    source, source_results, _ = smoke_run
    workdir = tmp_path / "reuse"
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    capsys.readouterr()
    assert cli.main(["run", SMOKE, "--workdir", str(workdir),
                     f"--config.teacher_workdir={os.path.join(source, 'teacher')}",
                     f"--config.synthesis.from_workdir={source}"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert not (workdir / "synthesis").exists()
    for key in ("num_impressions", "teacher_target_agreement", "zskd_student_test_accuracy"):
        assert results[key] == source_results[key], key


@pytest.mark.parametrize("overrides, source_teacher, message", [
    (("--config.synthesis.seed=1",), True, "synthesis.seed: 0 -> 1"),
    (("--config.synthesis.num_steps=21",), True, "synthesis.num_steps: 20 -> 21"),
    # Without teacher_workdir this run would train a teacher of its own.
    ((), False, "a teacher trained inside that run is"),
])
def test_impressions_of_another_setup_are_refused(overrides, source_teacher, message, smoke_run,
                                                  data_dir, tmp_path, monkeypatch, capsys):
    """Reusing impressions made with other synthesis settings or another teacher exits 2 and
    names the difference, before the workdir is created."""
    source, _, _ = smoke_run
    teacher = (f"--config.teacher_workdir={os.path.join(source, 'teacher')}",) * source_teacher
    workdir = tmp_path / "w"
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    assert cli.main(["run", SMOKE, "--workdir", str(workdir),
                     f"--config.synthesis.from_workdir={source}", *overrides, *teacher]) == 2
    err = capsys.readouterr().err
    assert "were made with another teacher or synthesis config" in err and message in err
    assert not workdir.exists()


@pytest.mark.parametrize("override, message", [
    ("--config.synthesis.betas=()", "betas must hold at least one scaling factor"),
    ("--config.synthesis.betas=(1.0,0.0)", "β must be > 0"),
    ("--config.synthesis.betas=(1.0,-0.1)", "β must be > 0"),
    ("--config.synthesis.num_per_class=1", "num_per_class=1 must be a positive multiple of "
                                           "len(betas)=2"),
    ("--config.synthesis.temperature=0", "temperatures τ must be > 0"),
    ("--config.distill.temperature=-1", "temperatures τ must be > 0"),
    ("--config.distill.num_seeds=0", "distill.num_seeds must be a whole number ≥ 1"),
    ("--config.synthesis.from_workdir=/nonexistent/run", "holds no finished synthesis"),
])
def test_bad_input_exits_2_and_leaves_no_workdir(override, message, tmp_path, data_dir,
                                                 monkeypatch, capsys):
    """Each bad setting is refused with exit status 2 and a clear message, before the workdir
    is created."""
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    workdir = tmp_path / "w"
    assert cli.main(["run", SMOKE, "--workdir", str(workdir), override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxinv: error: ") and message in err
    assert not workdir.exists()


@pytest.mark.parametrize("budget", ["mnist_long", "mnist_paper_steps"])
def test_larger_budget_configs_change_only_the_budget(budget):
    """`zskd.py:mnist_long` and `:mnist_paper_steps` are Table 1 with more synthesis steps and
    no references (those of `zskd.py:mnist` apply): nothing else may differ, the distillation
    included."""
    config_path = os.path.join(REPO, "experiments", "configs", "zskd.py")
    default = config_files.load_config(f"{config_path}:mnist").to_dict()
    larger = config_files.load_config(f"{config_path}:{budget}").to_dict()
    changed = {line.split(":")[0] for line in workdir_lib.config_differences(default, larger)}
    assert changed == {"synthesis.num_steps", "references"}
    assert larger["synthesis"]["num_steps"] > default["synthesis"]["num_steps"]


@pytest.mark.parametrize("key", sorted(workdir_lib.KEYS_ADDED_LATER))
def test_saved_config_without_a_later_key_resumes_only_with_its_earlier_value(key):
    """A config recorded before a key existed still matches one that holds the key's earlier
    behaviour (so its workdir resumes), and differs from one that turns it on."""
    *sections, name = key.split(".")

    def config_with(**leaves):
        config = {"seed": 0, **leaves}
        for section in reversed(sections):
            config = {section: config}
        return config

    earlier = workdir_lib.KEYS_ADDED_LATER[key]
    saved = config_with()
    assert workdir_lib.config_differences(saved, config_with(**{name: earlier})) == []
    turned_on = config_with(**{name: 2})
    assert workdir_lib.config_differences(saved, turned_on) == [f"{key}: {earlier!r} -> 2"]


def test_configs_and_methods_default_the_later_keys_to_their_earlier_values(mnist_teacher):
    """`impressions_method` and the zskd config hold every later key at its earlier value, so a
    rerun of an old command resumes its workdir; the one deliberate change, 8x8 starting noise,
    is undone in old commands by `--config.synthesis.init_resolution=None` (benchmarks/)."""
    config_path = os.path.join(REPO, "experiments", "configs", "zskd.py")
    config = config_files.load_config(f"{config_path}:mnist")
    assert config.synthesis.init_resolution == 8
    config.synthesis.init_resolution = None
    recorded = {"synthesis": config.synthesis.to_dict(), "distill": config.distill.to_dict(),
                "method_config": impressions.impressions_method(mnist_teacher).config}
    for key, earlier in workdir_lib.KEYS_ADDED_LATER.items():
        value = recorded
        for part in key.split("."):
            value = value[part]
        assert value == earlier, key
