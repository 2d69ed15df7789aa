"""`jaxinv demo`: teacher, Data and Class Impressions, students and the printed table, end to end
on scikit-learn's bundled digits."""

import os

import pytest

from jaxinv import cli


@pytest.mark.slow
def test_demo_runs_end_to_end_and_prints_its_table(tmp_path, capsys):
    """Both variants run from scratch into their own workdirs; the printed table has the four
    models, and every student, taught without a single real label, is far above chance (10 %)
    on the real held-out digits."""
    workdir = str(tmp_path / "demo")
    results = cli.run_demo(workdir)
    out = capsys.readouterr().out
    di, ci = results["data_impressions"], results["class_impressions"]
    rows = [line for line in out.splitlines() if line.startswith("|")][2:]  # header, rule
    assert len(rows) == 4, out
    assert rows[0].startswith("| teacher (digits_cnn, real labels)")
    assert "Student-KD (digits_cnn_half, real images)" in rows[1]
    assert "ZSKD student on 1200 Data Impressions" in rows[2]
    assert "student on 1200 Class Impressions" in rows[3]
    print(f"demo: teacher {di['teacher_test_accuracy']:.2f} %, "
          f"KD {di['distill']['student_kd_test_accuracy']:.2f} %, "
          f"DI {di['distill']['student_test_accuracy']:.2f} %, "
          f"CI {ci['distill']['student_test_accuracy']:.2f} %")
    assert di["dataset"] == ci["dataset"] == "digits"
    # One teacher serves both variants: trained once into the store.
    assert di["teacher"] == ci["teacher"]
    assert di["teacher_test_accuracy"] > 90.0
    assert di["distill"]["student_kd_test_accuracy"] > 50.0
    assert di["distill"]["student_test_accuracy"] > 50.0
    assert ci["distill"]["student_test_accuracy"] > 50.0
    assert (di["method"], ci["method"]) == ("data_impressions", "class_impressions")
    for variant in results:
        for name in ("results.json", os.path.join("figures", "transfer_set.png")):
            assert os.path.exists(os.path.join(workdir, variant, name)), (variant, name)
