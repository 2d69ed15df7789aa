"""`jaxinv run zskd.py:smoke` through `pipeline.run`: teacher from the store → Data Impressions →
student → report; reruns resume, the teacher is shared, and bad input is refused before any
file is written."""

import json
import os

import pytest

from jaxinv import cli, data, models, pipeline, report, saved_model, train
from jaxinv import workdir as workdir_lib

SMOKE = "zskd.py:smoke"


def _tree(folder: str) -> dict[str, int]:
    """Every file under `folder` with its modification time, but the lock a run takes."""
    return {os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
            for root, _, names in os.walk(folder) for name in names
            if name != workdir_lib.LOCK_FILE}


def _store_folders(store: str) -> set[str]:
    return set(os.listdir(store))


@pytest.fixture(scope="module")
def smoke_run(mnist_teacher, teacher_store, session_data_dir, smoke_config_of,
              tmp_path_factory):
    """One end-to-end run of zskd.py:smoke on real MNIST: (workdir, results, store folders
    before the run, store folders after it). `mnist_teacher` has put the teacher in the store."""
    workdir = str(tmp_path_factory.mktemp("zskd_smoke") / "run")
    before = _store_folders(teacher_store)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXINV_DATA_DIR", session_data_dir)
        results = pipeline.run(smoke_config_of(SMOKE), workdir)
    return workdir, results, before, _store_folders(teacher_store)


@pytest.mark.slow
def test_smoke_run_reports_teacher_student_and_figures(smoke_run, mnist_teacher):
    """results.json holds the teacher's accuracy and a student, distilled on 160 impressions
    alone, far above chance (10 %) on the real MNIST test set; both figures are drawn."""
    workdir, results, _, _ = smoke_run
    assert results == report.read_json(os.path.join(workdir, "results.json"))
    test = data.load_dataset("mnist", "test")
    expected = train.evaluate(mnist_teacher.model, mnist_teacher.variables, test.images,
                              test.labels)["accuracy"]
    assert results["teacher_test_accuracy"] == pytest.approx(expected)
    assert results["dataset"] == "mnist" and results["task"] == "distill"
    assert results["method"] == "data_impressions" and results["num_transfer_images"] == 160
    assert set(results["stage_seconds"]) == {"teacher", "synthesis", "distill"}
    # Even 20 synthesis steps pull the teacher's argmax towards the targets (chance: 10 %).
    assert results["teacher_target_agreement"] > 0.5
    student = results["distill"]
    print(f"zskd smoke: teacher {results['teacher_test_accuracy']:.2f} %, "
          f"student {student['student_test_accuracy']:.2f} %")
    assert student["student"] == "lenet5_half" and student["num_transfer_images"] == 160
    assert student["student_test_accuracy"] > 30.0
    assert 0.0 <= results["impressions"]["target_argmax_is_drawn_class"] <= 1.0
    assert set(results["impressions"]["similarity_check"]) == {"off_diagonal", "whole_matrix"}
    assert results["paper"]["zskd"] == 98.77  # the run is on the paper's dataset
    for name in ("transfer_set.png", "similarity.png"):
        with open(os.path.join(workdir, "figures", name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    assert os.path.exists(os.path.join(workdir, "synthesis", "transfer_set.npz"))
    assert os.path.exists(os.path.join(workdir, "distill", "student_seed0", "results.json"))


@pytest.mark.slow
def test_teacher_comes_from_the_session_store(smoke_run, teacher_store):
    """The run used the teacher `mnist_teacher` trained into the store: no new store folder."""
    _, results, before, after = smoke_run
    assert after == before
    assert os.path.dirname(results["teacher"]) == teacher_store
    assert os.path.basename(results["teacher"]) in before


@pytest.mark.slow
def test_rerun_returns_the_same_results_without_redoing_work(smoke_run, session_data_dir,
                                                             smoke_config_of, monkeypatch):
    """A finished workdir is final: the rerun returns its results, timings included, and no
    file is written or touched."""
    workdir, results, _, _ = smoke_run
    files = _tree(workdir)
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    assert pipeline.run(smoke_config_of(SMOKE), workdir) == results
    assert _tree(workdir) == files


@pytest.mark.slow
def test_other_distill_settings_reuse_the_same_teacher(smoke_run, session_data_dir,
                                                       smoke_config_of, teacher_store, tmp_path,
                                                       monkeypatch):
    """Only the distillation changed: the new run takes the very same teacher from the store
    (the teacher's key does not depend on the task's block) and trains no other."""
    _, first, _, store_after_first = smoke_run
    config = smoke_config_of(SMOKE)
    config.distill.num_steps = 16
    config.distill.checkpoint_every = 8
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    results = pipeline.run(config, str(tmp_path / "run"))
    assert results["teacher"] == first["teacher"]
    assert results["teacher_test_accuracy"] == first["teacher_test_accuracy"]
    assert _store_folders(teacher_store) == store_after_first
    assert 0.0 <= results["distill"]["student_test_accuracy"] <= 100.0


# ---- Validation: everything is checked before the workdir (or a teacher) is made ----------

@pytest.mark.parametrize("key, value, message", [
    ("synthesis.method", "deep_inversion", "not a jaxinv synthesis method; choose from"),
    ("task", "segmentation", "not a jaxinv task; choose from ['adapt', 'chain'"),
    ("synthesis.kind", "dirichlett", "synthesis.kind must be one of ('dirichlet', 'one_hot')"),
    ("synthesis.num_steps", 0, "synthesis.num_steps must be a whole number ≥ 1"),
    ("synthesis.steps_per_call", 3, "not a multiple of steps_per_call"),
    ("synthesis.learning_rate", -0.05, "learning_rate must be > 0"),
    ("distill.optimizer.learning_rate", -1e-2, "learning_rate must be > 0"),
    ("synthesis.init_resolution", 64, "pixels in [1, 32]"),
    ("synthesis.chunk_size", 0, "chunk_size must be a whole number ≥ 1"),
    ("synthesis.chunk_size", 12, "multiple of the 8 devices"),
    ("distill.batch_size", 60, "distill.batch_size = 60 is not a multiple of the 8 devices"),
    ("distill.num_seeds", 0, "distill.num_seeds must be a whole number ≥ 1"),
    ("distill.temperature", 0.0, "distill.temperature τ must be > 0"),
    ("distill.student", "lenet7", "lenet7"),
    ("dataset", "imagenet", "Unknown dataset 'imagenet'"),
    ("teacher.model", "lenet7", "lenet7"),
])
def test_bad_setting_is_refused_before_anything_is_written(key, value, message, smoke_config_of,
                                                           teacher_store, tmp_path):
    """Each bad setting raises a ValueError that names it; neither the workdir nor a teacher in
    the store is made."""
    config = smoke_config_of(SMOKE)
    cli.apply_override(config, key, repr(value))
    workdir = tmp_path / "run"
    store = _store_folders(teacher_store)
    with pytest.raises(ValueError) as err:
        pipeline.run(config, str(workdir))
    assert message in str(err.value)
    assert not workdir.exists()
    assert _store_folders(teacher_store) == store


def test_teacher_of_another_dataset_is_refused(smoke_config_of, random_variables, tmp_path):
    """A teacher_workdir whose model card says USPS, for an MNIST run, is refused with a message
    naming both datasets and the fix, before the workdir is made."""
    teacher_dir = tmp_path / "usps_teacher"
    module = models.get_model("lenet5", num_classes=10)
    saved_model.save_model(
        str(teacher_dir / saved_model.MODEL_DIR),
        saved_model.ModelCard(model="lenet5", num_classes=10, image_shape=(32, 32, 1),
                              dataset="usps", image_size=32),
        random_variables(module, (32, 32, 1)))
    config = smoke_config_of(SMOKE)
    config.teacher_workdir = str(teacher_dir)
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match="trained on usps, but this run's dataset is mnist"
                       ) as err:
        pipeline.run(config, str(workdir))
    assert "--config.dataset=usps" in str(err.value)
    assert not workdir.exists()
    # The same teacher fits a run on its own dataset.
    config.dataset = config.tuned_for = "usps"
    pipeline.check_config(config)


def test_missing_teacher_workdir_says_how_to_make_one(smoke_config_of, tmp_path):
    config = smoke_config_of(SMOKE)
    config.teacher_workdir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="jaxinv train"):
        pipeline.run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_dataset_override_changes_the_teachers_dataset(smoke_config_of, teacher_store):
    """`--config.dataset=usps` trains (and stores) the teacher on USPS: the teacher's training
    config takes the run's dataset, so its store key names usps, not mnist."""
    mnist = smoke_config_of(SMOKE)
    usps = smoke_config_of(SMOKE)
    cli.apply_override(usps, "dataset", "usps")
    training = pipeline.teacher_training_config(usps)
    assert training.dataset == "usps" and training.num_classes == 10
    path = pipeline.teacher_store_path(training)
    assert os.path.dirname(path) == teacher_store
    assert os.path.basename(path).startswith("usps_lenet5_")
    assert path != pipeline.teacher_store_path(pipeline.teacher_training_config(mnist))
    # Only the teacher's settings name its folder: the distillation block does not.
    mnist.distill.num_steps = 7
    assert (pipeline.teacher_store_path(pipeline.teacher_training_config(mnist))
            == pipeline.teacher_store_path(pipeline.teacher_training_config(
                smoke_config_of(SMOKE))))


def test_paper_figures_only_on_the_papers_dataset(smoke_config_of):
    config = smoke_config_of(SMOKE)
    assert pipeline._paper_figures(config) == {"teacher": 99.34, "student_kd": 99.25,
                                               "zskd": 98.77}
    config.paper.pgd = {"1": [74.2, 61.3]}  # nested figures come back as plain JSON values
    assert json.loads(json.dumps(pipeline._paper_figures(config)))["pgd"] == {"1": [74.2, 61.3]}
    config.dataset = "usps"
    assert pipeline._paper_figures(config) == {}
    del config.paper
    config.dataset = "mnist"
    assert pipeline._paper_figures(config) == {}
