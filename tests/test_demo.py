"""`jaxinv demo`: teacher, Data and Class Impressions, students and the printed table, end to end
on scikit-learn's bundled digits, with the issue's bar for the ZSKD student."""

import json
import os

from jaxinv import cli


def test_demo_runs_end_to_end_and_meets_its_bar(tmp_path, capsys):
    """The demo trains every stage from scratch in a fresh workdir, prints the comparison table
    and its results, and the student distilled on Data Impressions alone reaches ≥ 85 % on the
    held-out real digits (chance: 10 %)."""
    workdir = tmp_path / "demo"
    assert cli.main(["demo", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    results = json.loads(out[out.index("{"):])
    assert set(results) == {"teacher_test_accuracy", "student_kd_real_data_test_accuracy",
                            "zskd_data_impressions_test_accuracy",
                            "zskd_class_impressions_test_accuracy", "num_impressions"}
    assert results["zskd_data_impressions_test_accuracy"] >= 85.0
    assert results["teacher_test_accuracy"] >= 95.0
    assert "ZSKD student on 1200 Data Impressions" in out
    for stage in ("teacher", "data_impressions", "class_impressions"):
        assert os.path.exists(os.path.join(workdir, stage, "results.json")), stage
