"""Figures 3 and 4: the transfer-set size study runs end to end on its smoke config."""

import json
import os

import numpy as np
import pytest

from jaxinv import cli, transfer_size

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "experiments", "configs", "transfer_size.py:smoke")


def test_balanced_subset_takes_the_first_examples_of_every_class():
    classes = [0, 0, 1, 1, 0, 1]
    assert sorted(transfer_size.balanced_subset(np.array(classes), 4, 2)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="Not enough examples"):
        transfer_size.balanced_subset(np.array(classes), 8, 2)


def test_smoke_study_writes_curves_and_figures(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    workdir = str(tmp_path / "study")
    assert cli.main(["run", SMOKE, "--workdir", workdir]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["sizes"] == [120, 240]
    for curve in ("Data Impressions", "Class Impressions", "real training data"):
        assert len(results["accuracy"][curve]) == 2
    # Distilling on 240 real images (teacher soft targets) clearly beats chance.
    assert results["accuracy"]["real training data"][-1] > 15.0
    for name in ("fig3_mnist.png", "fig4_mnist.png"):
        assert os.path.getsize(os.path.join(workdir, "figures", name)) > 1000


def test_too_small_a_transfer_set_is_refused_before_anything_is_written(tmp_path, data_dir,
                                                                         monkeypatch, capsys):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    workdir = tmp_path / "w"
    assert cli.main(["run", SMOKE, "--workdir", str(workdir),
                     "--config.percentages=(0.01, 0.2)"]) == 2
    assert "smaller than distill.batch_size" in capsys.readouterr().err
    assert not workdir.exists()
