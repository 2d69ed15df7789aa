"""benchmarks/record.py: BENCHMARKS.md rewritten in a checkout without the recorded runs."""

import os

from benchmarks import record


def test_a_figure_is_refreshed_from_its_run_and_kept_once_the_run_is_gone(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(record, "REPO", str(tmp_path))
    os.makedirs(tmp_path / "benchmarks" / "figures")
    source = tmp_path / "runs" / "x" / "figure.png"
    assert record._figure("x.png", record._copy_if_present(str(source))) is None

    os.makedirs(source.parent)
    source.write_bytes(b"drawn by the run")
    figure = record._figure("x.png", record._copy_if_present(str(source)))
    assert figure == os.path.join("benchmarks", "figures", "x.png")
    assert (tmp_path / figure).read_bytes() == b"drawn by the run"

    source.unlink()  # a fresh checkout: runs/ is not committed
    assert record._figure("x.png", record._copy_if_present(str(source))) == figure
    assert (tmp_path / figure).read_bytes() == b"drawn by the run"
