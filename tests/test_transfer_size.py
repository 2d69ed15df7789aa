"""Figures 3 and 4: the transfer-set size task's class-balanced subsets, and its smoke config
end to end."""

import os

import numpy as np
import pytest

from jaxinv import pipeline
from jaxinv.tasks import transfer_size


def test_balanced_subset_takes_the_first_examples_of_every_class():
    """Equal numbers of every class, the first ones in order, so subsets of growing size
    are nested; too few examples of a class is refused with what to do."""
    classes = np.array([0, 0, 1, 2, 1, 0, 2, 1, 2, 2])
    picks = transfer_size.balanced_subset(classes, 6, 3)
    assert sorted(picks) == [0, 1, 2, 3, 4, 6]
    np.testing.assert_array_equal(np.bincount(classes[picks], minlength=3), [2, 2, 2])
    assert set(transfer_size.balanced_subset(classes, 3, 3)) <= set(picks)
    # A size that is not a multiple of the classes takes its floor per class.
    assert len(transfer_size.balanced_subset(classes, 8, 3)) == 6
    with pytest.raises(ValueError, match="Not enough examples for 4 per class; synthesise more"):
        transfer_size.balanced_subset(classes, 12, 3)


def test_bad_percentages_are_refused_before_anything_is_written(smoke_config_of, tmp_path):
    for percentages in ((), (0.0, 0.4), (0.2, 120.0)):
        config = smoke_config_of("transfer_size.py:smoke")
        config.transfer_size.percentages = percentages
        with pytest.raises(ValueError, match="transfer_size.percentages must be in"):
            pipeline.run(config, str(tmp_path / "run"))
        assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_smoke_study_writes_curves_and_figures(mnist_teacher, session_data_dir, smoke_config_of,
                                               tmp_path, monkeypatch):
    """transfer_size.py:smoke distils a student per size (0.2 % and 0.4 % of MNIST's 60,000)
    and source, and draws Figs. 3 and 4."""
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    workdir = tmp_path / "study"
    results = pipeline.run(smoke_config_of("transfer_size.py:smoke"), str(workdir))
    study = results["transfer_size"]
    print(f"transfer size smoke: {study['accuracy']}")
    assert results["task"] == "transfer_size" and "paper" not in results
    assert study["sizes"] == [120, 240] and study["percentages"] == [0.2, 0.4]
    assert set(study["accuracy"]) == {"data_impressions", "class_impressions",
                                      "real training data"}
    for curve in study["accuracy"].values():
        assert len(curve) == 2 and all(0.0 <= a <= 100.0 for a in curve)
    # 240 real images, or 240 impressions, with the teacher's soft targets beat chance (10 %).
    assert study["accuracy"]["real training data"][-1] > 50.0
    assert study["accuracy"]["data_impressions"][-1] > 25.0
    assert isinstance(study["ahead_of_baseline_at_every_size"], bool)
    for name in ("fig3_mnist.png", "fig4_mnist.png"):
        with open(workdir / "transfer_size" / "figures" / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    assert os.path.exists(workdir / "transfer_size" / "baseline_synthesis" / "transfer_set.npz")
