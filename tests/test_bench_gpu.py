"""The GPU benchmark (benchmarks/bench_gpu.py, benchmarks/gpu.sh), run in its CPU mode.

The GPU run itself needs a GPU; these tests check that the script works end to end in its
seconds-scale `--cpu` mode (the same code paths on a tiny ResNet-18), that PyTorch being
absent turns its rows into skips with the reason, and that the wrapper refuses a machine
without a GPU before running anything.
"""

import importlib.util
import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "bench_gpu.py"
WRAPPER = REPO / "benchmarks" / "gpu.sh"
PRECISIONS = ("fp32", "bf16")
TORCH_ROWS = [f"torch_{kind}_{p}" for kind in ("eager", "compiled") for p in PRECISIONS]
JAXINV_ROWS = [f"jaxinv_{p}" for p in PRECISIONS] + [f"jaxinv_engine_{p}" for p in PRECISIONS]


def _run(command, env=None, timeout=300):
    """Runs `command` from the repository root; returns the completed process."""
    return subprocess.run(command, cwd=REPO, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def _bench_gpu():
    """The benchmark module (the repository root holds the `benchmarks` package)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from benchmarks import bench_gpu

    return bench_gpu


def _shadow_torch(tmp_path) -> str:
    """A folder whose `torch` package fails to import, to put first on PYTHONPATH."""
    package = tmp_path / "shadow" / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        'raise ImportError("simulated for the test: torch is not installed")\n')
    return str(package.parent)


def _check_jaxinv_rows(data):
    for key in JAXINV_ROWS:
        row = data["results"][key]
        assert row["status"] == "ok", (key, row)
        assert row["image_steps_per_s"] > 0, (key, row)


@pytest.mark.slow
def test_cpu_mode_measures_every_row_and_the_sweep(tmp_path, capsys):
    out = tmp_path / "tmp.json"
    proc = _run([sys.executable, str(SCRIPT), "--cpu", "--out", str(out)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())

    assert data["settings"]["cpu"] is True and data["settings"]["model"] == "resnet18"
    _check_jaxinv_rows(data)
    sweep = data["sweep"]
    assert sweep["sizes"] == [8, 16]
    for precision in PRECISIONS:
        points = sweep["series"][f"jaxinv_{precision}"]
        assert [p["chunk_size"] for p in points] == [8, 16]
        assert all(p["image_steps_per_s"] > 0 for p in points)
        saturation = sweep["saturation"][f"jaxinv_{precision}"]
        assert saturation["chunk_size"] in (8, None) and saturation["reason"]

    if importlib.util.find_spec("torch") is not None:
        for key in TORCH_ROWS:
            row = data["results"][key]
            assert row["status"] == "ok", (key, row)
            assert row["image_steps_per_s"] > 0, (key, row)
        assert data["results"]["torch_compiled_fp32"]["backend"] == "aot_eager"
        # The PyTorch twin, loaded with jaxinv's weights, computes the same logits.
        assert data["settings"]["torch_num_params"] == data["settings"]["num_params"]
        assert data["settings"]["torch_logit_difference"] < 1e-4
        assert len(sweep["series"]["torch_eager_fp32"]) >= 1
    else:
        for key in TORCH_ROWS:
            row = data["results"][key]
            assert row["status"] == "skipped" and "torch is not importable" in row["reason"]

    # The tables go to stdout, and --report prints them again from the JSON alone.
    assert "| measurement | precision | chunk | image-steps/s |" in proc.stdout
    assert "Chunk-size sweep" in proc.stdout
    bench_gpu = _bench_gpu()
    capsys.readouterr()
    bench_gpu.main(["--report", str(out)])
    assert capsys.readouterr().out.strip() == bench_gpu.markdown(data).strip()


@pytest.mark.slow
def test_wrapper_without_torch_reports_torch_rows_skipped(tmp_path):
    fake_smi = tmp_path / "nvidia-smi"
    fake_smi.write_text('#!/bin/sh\necho "GPU 0: simulated for the test"\n')
    fake_smi.chmod(fake_smi.stat().st_mode | stat.S_IXUSR)
    results = tmp_path / "results"
    proc = _run(["bash", str(WRAPPER), "--cpu", "--sizes", "8", "--num_chunks", "1"],
                env={"NVIDIA_SMI": str(fake_smi), "OUT": str(results),
                     "PYTHON": sys.executable,
                     "PYTHONPATH": os.pathsep.join(filter(None, [
                         _shadow_torch(tmp_path), os.environ.get("PYTHONPATH")]))})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {"gpu_bench.json", "gpu_bench.log", "versions.txt"} <= {
        p.name for p in results.iterdir()}
    assert "simulated for the test" in (results / "versions.txt").read_text()
    data = json.loads((results / "gpu_bench.json").read_text())
    _check_jaxinv_rows(data)
    for key in TORCH_ROWS:
        row = data["results"][key]
        assert row == {"status": "skipped", "reason": "torch is not importable: ImportError: "
                       "simulated for the test: torch is not installed"}, (key, row)
    assert data["settings"]["torch"].startswith("torch is not importable")
    assert data["sweep"]["stopped"]["torch_eager_fp32"].startswith("torch is not importable")
    assert [p["chunk_size"] for p in data["sweep"]["series"]["jaxinv_bf16"]] == [8]
    assert "skipped: torch is not importable" in (results / "gpu_bench.log").read_text()


def test_wrapper_refuses_a_machine_without_gpu_before_writing(tmp_path):
    results = tmp_path / "results"
    proc = _run(["bash", str(WRAPPER)],
                env={"NVIDIA_SMI": str(tmp_path / "no-nvidia-smi"), "OUT": str(results)},
                timeout=60)
    assert proc.returncode == 2
    assert "needs an NVIDIA GPU" in proc.stderr and "bench_gpu.py --cpu" in proc.stderr
    assert not results.exists()


def test_gpu_mode_refuses_cpu_only_jax_before_writing(tmp_path):
    out = tmp_path / "r.json"
    proc = _run([sys.executable, str(SCRIPT), "--out", str(out)], env={"JAX_PLATFORMS": "cpu"},
                timeout=120)
    assert proc.returncode != 0
    assert "not on a GPU: install jax[cuda12]==0.10.2" in proc.stderr
    assert "--cpu" in proc.stderr
    assert not out.exists()


def test_saturation_is_the_best_size_before_a_doubling_gains_under_5_percent():
    saturation = _bench_gpu().saturation

    def series(*rates):
        return [{"chunk_size": 64 * 2 ** i, "image_steps_per_s": rate}
                for i, rate in enumerate(rates)]

    found = saturation(series(100.0, 180.0, 186.0, 400.0))
    assert found["chunk_size"] == 128 and found["image_steps_per_s"] == 180.0
    assert "256" in found["reason"]
    # A drop counts as saturation too, at the best size so far.
    assert saturation(series(100.0, 200.0, 150.0))["chunk_size"] == 128
    assert saturation(series(100.0, 106.0, 112.0))["chunk_size"] is None
    assert saturation([])["reason"] == "no size measured"
