"""benchmarks/record.py: figures kept without runs/, the spread rule, reused sets, the
recorded commands and the ZSKD gap paragraph."""

import os
import shlex

import pytest

from benchmarks import record
from jaxinv import cli, experiment_configs, pipeline


def test_a_figure_is_refreshed_from_its_run_and_kept_once_the_run_is_gone(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(record, "REPO", str(tmp_path))
    os.makedirs(tmp_path / "benchmarks" / "figures")
    source = tmp_path / "runs" / "x" / "figure.png"
    assert record._refreshed_figure("x.png", record._copy_if_present(str(source))) is None

    os.makedirs(source.parent)
    source.write_bytes(b"drawn by the run")
    figure = record._refreshed_figure("x.png", record._copy_if_present(str(source)))
    assert figure == os.path.join("benchmarks", "figures", "x.png")
    assert (tmp_path / figure).read_bytes() == b"drawn by the run"

    source.unlink()  # a fresh checkout: runs/ is not committed
    assert record._refreshed_figure("x.png", record._copy_if_present(str(source))) == figure
    assert (tmp_path / figure).read_bytes() == b"drawn by the run"


def test_spaceshipnet_ablation_claims_a_difference_only_with_three_seeds_a_side(monkeypatch):
    accuracies = {"mnist": [70.0, 71.0, 72.0], "mnist_no_cfe": [50.0, 51.0, 52.0],
                  "mnist_code": [95.0]}

    def load(name):
        for run, values in accuracies.items():
            for seed, value in enumerate(values):
                if name == f"spaceshipnet_{run}_seed{seed}":
                    return {"command": f"jaxinv run {run} --seed={seed}", "date": "today",
                            "results": {"synthesis_student": {"student_test_accuracy": value}}}
        return None

    monkeypatch.setattr(record, "_load", load)
    rows = {line.split(" | ")[0].strip("| "): line
            for line in record.spaceshipnet_tables().splitlines() if line.startswith("| Space")}
    assert "-20.00 (beyond the spread)" in rows["SpaceshipNet without CFE"]
    assert "51.00 ± 1.00 (3 seeds: 50.00, 51.00, 52.00)" in rows["SpaceshipNet without CFE"]
    code = rows["SpaceshipNet with the authors' code's settings"]
    assert "95.00 (1 seed)" in code and "+24.00" in code and "beyond" not in code


def test_an_experiment_reusing_a_set_gets_a_copy_of_it_or_says_what_to_record_first(
        tmp_path, monkeypatch):
    monkeypatch.setattr(record, "REPO", str(tmp_path))
    section = "spaceshipnet_mnist_pool_kd"
    command = record.EXPERIMENTS[section][0]
    with pytest.raises(SystemExit, match="record.py spaceshipnet_mnist_seed0"):
        record._copy_reused_synthesis(section, command)
    assert not (tmp_path / "runs").exists()

    source = tmp_path / "runs" / "spaceshipnet_mnist_seed0" / "synthesis"
    source.mkdir(parents=True)
    (source / "transfer_set.npz").write_bytes(b"the pool")
    record._copy_reused_synthesis(section, command)
    copied = tmp_path / record._workdir(command) / "synthesis" / "transfer_set.npz"
    assert copied.read_bytes() == b"the pool"


def test_every_recorded_command_names_a_valid_config_with_the_keys_it_overrides(
        data_dir, monkeypatch):
    """A recording that fails on its first line, or after its synthesis on a setting
    `check_config` could have refused, wastes a queue of runs behind it."""
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    for command, _ in record.EXPERIMENTS.values():
        words = shlex.split(command)
        if words[:2] != ["jaxinv", "run"]:
            continue
        config = experiment_configs.load_config(words[2])
        for word in words[3:]:
            if word.startswith("--config."):
                key, value = word.removeprefix("--config.").split("=", 1)
                cli.apply_override(config, key, value)  # ValueError naming a missing key
        pipeline.check_config(config)


def test_the_zskd_gap_paragraph_says_which_side_of_the_paper_a_figure_lies():
    def summary(mean, sd, students=3):
        return {"mean": mean, "sd": sd, "seeds": list(range(students))}

    means = {"protocol": (summary(98.07, 0.42, 5), 98.14, 98.77),
             "released": (summary(84.28, 2.79), 84.30, 98.77)}
    finding = record._zskd_gap_finding("mnist", means)
    assert "-13.79 points (beyond the spread" in finding
    assert "84.30, 14.47 below the paper's figure" in finding
    assert "recipe" not in finding
    means["released_images"] = (summary(97.0, 0.5), 97.1, 98.77)
    finding = record._zskd_gap_finding("mnist", means)
    assert "images give 97.00: the images change our default by -1.07 (beyond" in finding
    assert "the released recipe changes theirs by -12.72 (beyond" in finding
    means["released"] = (summary(98.3, 0.3), 99.0, 98.77)
    finding = record._zskd_gap_finding("mnist", means)
    assert "0.23 above the paper's figure" in finding
    assert "+0.23 points (within the spread" in finding
    means["released"] = (summary(90.0, 0.3, 2), 90.1, 98.77)  # two students make no claim
    assert "(within the spread" in record._zskd_gap_finding("mnist", means)
