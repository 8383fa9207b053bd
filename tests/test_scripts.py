from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args, message", [
    (["--budget", "abc"], "error: budget 'abc': not a number of FLOPs"),
    (["--budget", "0"], "error: budget '0': must be a positive number"),
    (["--budget=-5M"], "error: budget '-5M': must be a positive number"),
    (["--budget", "200MB"], "error: budget '200MB': unit 'MB' is not FLOPs or MACs"),
    (["--budget", "1M"], "below the smallest architecture of space 'ghostnet' (8.20 MFLOPs"),
    (["--trials", "0"], "error: --trials 0: must be >= 1"),
    (["--space", "nope"], "error: space 'nope': no such file"),
    (["--data", "imagefolder"], "error: --data-dir data: no such directory"),
    (["--data", "imagefolder", "--data-dir", "/nonexistent"], "no such directory"),
    (["--storage", "redis://localhost"], "unknown scheme"),
    # with several workers the data is still checked once, before any worker starts
    (["--n-jobs", "2", "--data", "imagefolder", "--data-dir", "/nonexistent"],
     "error: --data-dir /nonexistent: no such directory"),
    (["--preset", "huge"], "error: argument --preset: invalid choice: 'huge'"),
    (["--prescreen", "nope"], "error: --prescreen 'nope': unknown score (known: synflow"),
    (["--prescreen", "naswot", "--pool", "3", "--top", "5"], "error: --top 5 is above --pool 3"),
    (["--budget", "-5M"], "error: argument --budget: expected one argument"),
    (["--epochs", "x"], "error: argument --epochs: invalid int value"),
    (["--epochs", "0"], "error: --epochs 0: must be >= 1"),
    (["--latency-of", "1.0"], "error: --latency-of needs --latency-table FILE"),
    (["--latency-of", "1.0", "--latency-ms", "5", "--latency-table", "t.json"],
     "error: --latency-of sets the latency limit: drop --latency-ms"),
    (["--latency-of", "2.5", "--latency-table", "t.json"],
     "error: --latency-of 2.5: no reference GhostNet of that width in space 'ghostnet'"),
])
def test_search_bad_input_is_one_line_exit_2(tmp_path, args, message):
    extra = [] if "--trials" in args else ["--trials", "1"]
    r = run("search.py", *args, *extra, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()  # a refused command leaves nothing behind


@pytest.mark.parametrize("module, required", [
    ("ghostsearch.cli.search", []), ("ghostsearch.cli.train", ["--model", "resnet56"]),
    ("ghostsearch.bench.proxy_fidelity", []), ("ghostsearch.bench.bench_proxy", [])])
def test_training_commands_default_to_real_data(module, required):
    """Without --data a training command reads CIFAR-10 from ./data, never generated images
    (a bare command that trained on noise would report accuracies of nothing)."""
    import importlib

    args = importlib.import_module(module).parse_args(required)
    assert (args.data, args.data_dir) == ("cifar10", "data")
    assert importlib.import_module(module).parse_args([*required, "--data", "synthetic"]).data \
        == "synthetic"


def test_count_script_prints_the_reference_table(tmp_path):
    r = run("count.py", "--width", "0.5", "--format", "csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.strip().splitlines()
    assert "params" in header and row.startswith("GhostNet 0.5x,224,2587292,42.33,True,True")


@pytest.mark.slow
def test_search_end_to_end_then_export(tmp_path):
    args = ["--preset", "quick", "--budget", "60M", "--data", "synthetic", "--trials", "3",
            "--epochs", "1", "--batch-size", "64", "--train-subset", "64", "--val-size", "40",
            "--resolution", "16", "--device", "cpu", "--study-name", "e2e"]
    r = run("search.py", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "results" / "e2e"
    assert {"study.db", "trials.csv", "best_arch.json", "run.json"} <= {
        p.name for p in out.iterdir()}
    assert "best within budget" in r.stdout
    best = json.loads((out / "best_arch.json").read_text())
    assert best["metadata"]["flops"] <= 60_000_000
    r = run("export.py", "--study-name", "e2e", "--trial", "0", cwd=tmp_path)
    assert r.returncode == 0 and (out / "trial_0.json").exists()
    r = run("export.py", "--study-name", "missing", cwd=tmp_path)
    assert r.returncode == 2 and "no results/missing/study.db" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["eager", "onnxruntime"])
def test_latency_limited_search_measures_its_pareto_set(tmp_path, runtime, monkeypatch):
    from ghostsearch.latency.table import LatencyTable

    monkeypatch.setenv("GHOSTSEARCH_CACHE", str(tmp_path / "cache"))
    # a synthetic CPU table: every op costs its MFLOPs in ms
    table = LatencyTable("cpu: synthetic", "x", 1, 32, runtime=runtime,
                         fits={"all": [0.0, 1.0, 0.0]})
    path = table.save(tmp_path / "lat.json")
    r = run("search.py", "--preset", "quick", "--space", "ghostnet_cifar", "--budget", "60M",
            "--data", "synthetic", "--trials", "3", "--epochs", "1", "--batch-size", "64",
            "--train-subset", "64", "--val-size", "40", "--resolution", "16", "--device", "cpu",
            "--study-name", "lat",
            "--latency-ms", "30", "--latency-table", str(path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    described = {"eager": "eager PyTorch, 1 thread", "onnxruntime": "onnxruntime float32, 1 "
                 "thread"}[runtime]
    assert f"latency <= 30 ms ({described}, batch 1, cpu: synthetic)" in r.stdout
    assert "measured the final Pareto set" in r.stdout and f"on {described}" in r.stdout
    import pandas as pd

    trials = pd.read_csv(tmp_path / "results" / "lat" / "trials.csv")
    measured = trials[trials.measured_ms.notna()]
    # the front and the baselines carry a measured latency; untrained trials none
    assert len(measured) and measured.state.eq("COMPLETE").all()
    assert (measured.baseline.notna() | measured.feasible).all()
    report = (tmp_path / "results" / "lat" / "report.md").read_text()
    assert "Measured latency of the final Pareto set" in report
    assert f"({runtime})" in report  # what ran the measured networks


def test_latency_of_limits_to_the_tables_prediction_for_that_ghostnet(tmp_path):
    """--latency-of 1.0 is --latency-ms at the table's prediction for GhostNet 1.0x, rounded
    up so that GhostNet 1.0x meets it and is the widest reference within the limit."""
    from ghostsearch.latency.table import LatencyTable
    from ghostsearch.search.study import baseline_widths
    from ghostsearch.spaces.limits import Limits
    from ghostsearch.spaces.space import load_space
    from ghostsearch.workflow.search import latency_of

    space = load_space("ghostnet")
    path = LatencyTable("cpu: synthetic", "x", 1, space.deployment.resolution,
                        fits={"all": [0.001, 1.0, 0.0]}).save(tmp_path / "lat.json")
    limit = latency_of(1.0, str(path), space)
    ref = space.build_config(space.reference_params(1.0))
    predicted = LatencyTable.load(path).predict(ref)
    assert predicted <= limit < predicted + 1e-4
    limits = Limits(None, limit, 0.85, LatencyTable.load(path))
    assert baseline_widths(space, limits)[-1] == ("GhostNet 1.0x (widest within budget)", 1.0)


def test_a_prescreened_cpu_search_scores_its_pool_before_it_estimates(tmp_path):
    """The pool is scored before the estimate, which then times the picked candidates; the
    cpu preset's other defaults (no pruning) stay when its prescreen is overridden."""
    import pandas as pd

    r = run("search.py", "--budget", "200MFLOPs", "--data", "synthetic", "--preset", "cpu",
            "--prescreen", "snip", "--pool", "6", "--top", "2", "--epochs", "1",
            "--train-subset", "64", "--val-size", "32", "--device", "cpu", "--no-baselines",
            "--n-jobs", "1", "--study-name", "p", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ("candidates: [170, 200] MFLOPs (--band 0.85), a pool of 6 drawn uniformly, its "
            "best 2 by snip trained; the reference") in r.stdout
    assert "prescreen: 6 candidates within the limits scored with snip in" in r.stdout
    assert "training the best 2 (every candidate goes to pool.csv)" in r.stdout
    assert "for 2 trials with 1 worker(s)" in r.stdout
    assert "pruning shortens it" not in r.stdout  # the cpu preset does not prune
    pool = pd.read_csv(tmp_path / "results" / "p" / "pool.csv")
    assert len(pool) == 6 and pool.picked.sum() == 2
    trials = pd.read_csv(tmp_path / "results" / "p" / "trials.csv")
    assert (trials.state == "COMPLETE").sum() == 2

def test_the_cpu_preset_trains_three_candidates_drawn_from_the_band(tmp_path):
    """Without a prescreen the cpu preset trains 3 sampled candidates (the references come on
    top), and says they are random draws from the band."""
    import pandas as pd

    r = run("search.py", "--budget", "200MFLOPs", "--data", "synthetic", "--preset", "cpu",
            "--epochs", "1", "--train-subset", "64", "--val-size", "32", "--device", "cpu",
            "--no-baselines", "--n-jobs", "1", "--study-name", "c", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ("candidates: [170, 200] MFLOPs (--band 0.85), drawn by tpe (at random: TPE models "
            "only after 10 trials)") in r.stdout
    assert "for 3 trials with 1 worker(s)" in r.stdout
    trials = pd.read_csv(tmp_path / "results" / "c" / "trials.csv")
    assert (trials.state == "COMPLETE").sum() == 3
    assert trials.MFLOPs.between(170, 200).all()


def test_out_folder_holds_the_study_database(tmp_path):
    r = run("search.py", "--budget", "200MFLOPs", "--data", "synthetic", "--trials", "1",
            "--epochs", "1", "--device", "cpu", "--no-baselines", "--out", "elsewhere/x",
            "--prescreen", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "elsewhere" / "x" / "study.db").exists()
    assert (tmp_path / "elsewhere" / "x" / "best_arch.json").exists()
    assert not (tmp_path / "results").exists()
    # without --n-jobs a CPU search takes one single-thread worker per core (at most 8)
    workers = min(len(os.sched_getaffinity(0)), 8)
    # without --preset the device decides: no CUDA here, so the cpu preset, and it says so
    assert r.stdout.startswith("preset cpu (auto: no CUDA device")
    assert f"device cpu ({workers} worker(s)); proxy protocol (preset cpu)" in r.stdout
    assert ("candidates: [170, 200] MFLOPs (--band 0.85), drawn by tpe (at random: TPE models "
            "only after 10 trials); the reference") in r.stdout
    assert "estimate: about" in r.stdout


def test_progress_without_a_terminal_writes_plain_lines(monkeypatch):
    import io

    from ghostsearch import progress
    from ghostsearch.progress import LineBar, progress_bar

    monkeypatch.setattr(progress, "_SHOWN", True)  # as the command line sets it
    out = io.StringIO()
    bar = progress_bar(total=1000, desc="trials", file=out, interval=3600)
    assert isinstance(bar, LineBar)
    for _ in range(1000):
        bar.update(1)
        bar.set_postfix({"best": "1%"}, refresh=True)
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2  # the first state and the final one; nothing in between
    assert lines[-1].startswith("trials: 100%") and "1000/1000" in lines[-1]
