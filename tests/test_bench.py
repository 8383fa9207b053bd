from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from ghostsearch import reference_config
from ghostsearch.bench.proxy_bench import (
    VARIANTS,
    PILImages,
    bench_architectures,
    naive_comparison,
    naive_proxy,
    profile_steps,
    timed_proxy,
    trials_per_hour,
)
from ghostsearch.search.proxy import proxy_config
from ghostsearch.search.settings import DataSpec, SearchSettings
from ghostsearch.spaces.space import load_space
from ghostsearch.train.data import load_data, train_files
from ghostsearch.train.loop import train_proxy
from ghostsearch.train.recipe import Recipe

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GHOSTSEARCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tiny():
    data = load_data("synthetic", resolution=16, train_subset=64, val_size=32, progress=False,
                     synthetic_size=(128, 32))
    protocol = Recipe(epochs=2, batch_size=32)
    cfg = proxy_config(reference_config(0.3, num_classes=10, resolution=16), data, protocol)
    return cfg, data, protocol


def test_timed_proxy_trains_exactly_what_train_proxy_trains(tiny):
    cfg, data, protocol = tiny
    timed = timed_proxy(cfg, data, protocol, seed=3, device="cpu")
    plain = train_proxy(cfg, data, protocol, seed=3, device="cpu", evaluate_test=False)
    assert timed["val_curve"] == plain.val_curve  # same weights, batches and order on CPU
    assert len(timed["epoch_s"]) == 2 and timed["train_images"] == 64
    assert timed["first_epoch_s"] == timed["epoch_s"][0]
    assert timed["steady_epoch_s"] == timed["epoch_s"][1]
    assert timed["trial_s"] >= sum(timed["epoch_s"]) + timed["build_s"] + timed["data_s"]
    assert timed["images_per_s"] == pytest.approx(64 / timed["steady_epoch_s"])
    assert timed["peak_mem_mb"] is None  # CPU: no device memory counter


def test_variants_change_the_loop_not_the_training(tiny):
    cfg, data, protocol = tiny
    base = timed_proxy(cfg, data, protocol, seed=1, device="cpu")
    nchw = timed_proxy(cfg, data, protocol, seed=1, device="cpu",
                       variant=VARIANTS["no-channels-last"])
    # the same training in another memory layout: equal up to float summation order
    assert nchw["val_curve"] == pytest.approx(base["val_curve"], abs=1e-6 + 100 / 32)
    no_cudnn = timed_proxy(cfg, data, protocol, seed=1, device="cpu", variant=VARIANTS["no-cudnn"])
    assert no_cudnn["val_curve"] == base["val_curve"]  # cuDNN plays no part on a CPU
    assert torch.backends.cudnn.enabled  # and it is on again afterwards
    assert set(VARIANTS) == {"default", "fp32", "no-cudnn", "no-channels-last", "cuda-graphs",
                             "compile", "compile-no-channels-last"}


def _folder(root: Path, per_class: int = 10, size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b", "c"):
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                    root / split / c / f"{i}.png")  # lossless: decoded pixels are comparable
    return root


def test_train_files_are_the_training_split_in_order(tmp_path):
    root = _folder(tmp_path / "d")
    data = load_data("imagefolder", root, val_size=6, train_subset=20, seed=5, progress=False)
    files = train_files(root, val_size=6, train_subset=20, seed=5)
    assert len(files) == 20
    decoded = torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1)
                           for f, _ in files])
    assert torch.equal(decoded, data.train.images)
    assert [label for _, label in files] == data.train.labels.tolist()


def test_pil_images_read_files_or_the_split(tmp_path):
    root = _folder(tmp_path / "d")
    data = load_data("imagefolder", root, val_size=6, progress=False)
    files = train_files(root, val_size=6)
    to_tensor = transforms.PILToTensor()
    from_files = PILImages(data.train, files, to_tensor)
    from_split = PILImages(data.train, None, to_tensor)
    assert len(from_files) == len(from_split) == 24
    for i in (0, 7, 23):
        assert torch.equal(from_files[i][0], data.train.images[i])
        assert torch.equal(from_split[i][0], data.train.images[i])
        assert from_files[i][1] == from_split[i][1] == int(data.train.labels[i])
    with pytest.raises(ValueError, match="3 files for a split of 24 images"):
        PILImages(data.train, files[:3], to_tensor)


def test_naive_loop_reads_the_files_and_reports_epochs(tmp_path):
    root = _folder(tmp_path / "d", per_class=16)
    data = load_data("imagefolder", root, val_size=8, progress=False)
    protocol = Recipe(epochs=2, batch_size=512)
    cfg = proxy_config(reference_config(0.3, num_classes=3, resolution=8), data, protocol)
    r = naive_proxy(cfg, data, protocol, seed=0, device="cpu", files=train_files(root, val_size=8),
                    workers=0, batch_size=8)
    assert len(r["epoch_s"]) == 2 and r["batch_size"] == 8 and r["reads_files"]
    assert r["train_images"] == 40  # 40 training images, batches of 8, none dropped
    assert 0 <= r["val_acc"] <= 100 and r["steady_epoch_s"] == r["epoch_s"][1]


def test_bench_architectures_are_the_reference_and_samples_within_budget():
    space = load_space("ghostnet")
    archs = bench_architectures(space, 100_000_000, 2, seed=0)
    assert [n for n, _ in archs][0] == "ghostnet_1.0x"
    assert archs[0][1] == reference_config(1.0)
    assert len(archs) == 3 and archs[1][0].startswith("searched_0 (")


def test_trials_per_hour_runs_exactly_the_trials(tmp_path):
    space = load_space("ghostnet_cifar")
    settings = SearchSettings(
        study_name="x", storage="sqlite:///:memory:", space=space,
        data=DataSpec("synthetic", resolution=16, train_subset=64, val_size=32),
        protocol=Recipe(epochs=1, batch_size=32), budget_flops=30_000_000,
        device="cpu", pruner="none", baselines=False)
    r = trials_per_hour(settings, 1, trials_per_job=2)
    assert r["jobs"] == 1 and r["trained"] == 2
    assert 0 < r["span_s"] <= r["wall_s"]
    assert r["trials_per_hour"] == pytest.approx(2 * 3600 / r["span_s"])


def test_profile_steps_writes_tables(tiny, tmp_path):
    cfg, data, protocol = tiny
    seconds = profile_steps(cfg, data, protocol, seed=0, device="cpu", out_dir=tmp_path / "p",
                            steady_after=3)  # 3 steps after the first: past the epoch end
    assert set(seconds) == {"first_step_s", "steady_step_s"}
    for name in ("first_step", "steady_step"):
        assert "aten::convolution" in (tmp_path / "p" / f"{name}.txt").read_text()
        json.loads((tmp_path / "p" / f"{name}.trace.json").read_text())


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_proxy.py"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


def test_bench_proxy_script_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    r = _bench("--data", "synthetic", "--resolution", "16", "--train-subset", "64",
               "--val-size", "32", "--space", "ghostnet_cifar", "--budget", "30MFLOPs",
               "--searched", "1", "--epochs", "2", "--batch-size", "32", "16",
               "--naive-batch", "16",
               "--workers", "0", "--jobs", "1", "--trials-per-job", "1", "--device", "cpu",
               "--threads", "1", "--json", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert {row.get("threads") for row in result["rows"] if row["loop"] != "naive"} == {1}
    loops = [(row["arch"], row["loop"], row["batch"]) for row in result["rows"]]
    assert loops[:3] == [("ghostnet_1.0x", "default", 32), ("ghostnet_1.0x", "default", 16),
                         ("ghostnet_1.0x", "naive", 16)]
    assert len(loops) == 5 and [b for _, _, b in loops[3:]] == [32, 16]
    # accuracy is compared at the naive loop's batch (16), speed at the first batch (32)
    ratio = result["naive_ratio"][0]
    assert ratio["acc_compared_at_batch"] == 16 and ratio["fast_batch"] == 32
    assert ratio["val_acc_fast_minus_naive"] == pytest.approx(
        result["rows"][1]["val_acc"] - result["rows"][2]["val_acc"])
    assert result["jobs"][0]["trained"] == 1
    assert ratio["steady_epoch_x"] > 0 and ratio["best_jobs"] == 1
    assert "the fast loop's steady epoch" in r.stdout and "trials per hour:" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--variants", "default,turbo"], "error: --variants turbo: choose from default, fp32"),
    (["--epochs", "1"], "error: --epochs 1: need >= 2"),
    (["--jobs", "0"], "error: --jobs values and --trials-per-job must be >= 1"),
    (["--variants", "cuda-graphs", "--device", "cpu"],
     "error: --variants cuda-graphs needs a CUDA device, not cpu"),
])
def test_bench_proxy_bad_input_is_one_line(tmp_path, args, message):
    r = _bench(*args, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cuda_graphs_are_refused_off_cuda(tiny):
    from ghostsearch import ConfigError
    from ghostsearch.train.loop import graph_model, proxy_loaders

    cfg, data, protocol = tiny
    loader, _ = proxy_loaders(data, protocol, 0, torch.device("cpu"))
    with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device, not cpu"):
        graph_model(torch.nn.Linear(2, 2), loader, amp=False)
    with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
        train_proxy(cfg, data, protocol, seed=0, device="cpu", cuda_graphs=True)
    settings = dict(study_name="x", storage="sqlite:///:memory:",
                    space=load_space("ghostnet_cifar"),
                    data=DataSpec("synthetic"), protocol=protocol, device="cpu")
    with pytest.raises(ConfigError, match="--cuda-graphs needs a CUDA device"):
        SearchSettings(**settings, cuda_graphs=True)


def test_naive_comparison_is_like_for_like():
    def fast(batch, epochs, acc, trial):
        return {"arch": "a", "loop": "default", "batch": batch, "epoch_s": epochs,
                "steady_epoch_s": epochs[-1], "val_acc": acc, "trial_s": trial}

    rows = [fast(512, [10.0, 2.0, 2.0], 60.0, 20.0), fast(128, [10.0, 5.0, 5.0], 70.0, 26.0),
            {"arch": "a", "loop": "naive", "batch": 128, "epoch_s": [30.0, 20.0, 20.0],
             "steady_epoch_s": 20.0, "val_acc": 71.0},
            fast(512, [1.0, 1.0, 1.0], 1.0, 3.0) | {"arch": "b"}]  # b: no naive run
    jobs = [{"jobs": 1, "trials_per_hour": 100.0}, {"jobs": 4, "trials_per_hour": 300.0}]
    [r] = naive_comparison(rows, jobs, batch=512)
    assert r["arch"] == "a" and r["steady_epoch_x"] == 10.0 and r["all_epochs_x"] == 5.0
    # accuracy at the naive loop's batch: 70 - 71, not the batch-512 row's 60 - 71
    assert r["acc_compared_at_batch"] == 128 and r["val_acc_fast_minus_naive"] == -1.0
    # naive trial: its 70 s of epochs + the fast trial's 20 - 14 s outside epochs = 76 s
    assert r["naive_trials_per_hour"] == pytest.approx(3600 / 76)
    assert r["best_jobs"] == 4 and r["trials_per_hour_x"] == pytest.approx(300 * 76 / 3600)
    [alone] = naive_comparison(rows[:1] + rows[2:3], [], batch=512)
    assert alone["acc_compared_at_batch"] == 512 and "trials_per_hour_x" not in alone


def test_limit_vs_budget_finds_the_same_band_when_latency_is_flops(tmp_path):
    """With a table that predicts a network's MFLOPs as its ms, the latency band of GhostNet
    1.0x is its FLOPs band: every candidate of either draw lies in both."""
    from ghostsearch.bench.limit_vs_budget import main
    from ghostsearch.latency.table import LatencyTable

    space = load_space("ghostnet")
    path = LatencyTable("cpu: synthetic", "x", 1, space.deployment.resolution,
                        fits={"all": [0.0, 1.0, 0.0]}).save(tmp_path / "lat.json")
    out = tmp_path / "cmp.json"
    assert main(["--table", str(path), "--n", "20", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["limit_ms"] == pytest.approx(got["budget_mflops"], rel=1e-6)
    for band in ("latency_band", "flops_band"):
        assert got[band]["n"] == 20
        assert got[band]["in_flops_band"] == got[band]["in_latency_band"] == 20
        assert 0.85 * got["budget_mflops"] <= got[band]["mflops_min"]
    from ghostsearch import ConfigError

    with pytest.raises(ConfigError, match="--width 2.5: no reference GhostNet of that width"):
        main(["--table", str(path), "--width", "2.5"])


def test_flip_evaluation_averages_the_logits_of_an_image_and_its_mirror():
    """For a linear model W.x, flip's logits W.x + W.flip(x) are those of the linear model
    W + flip(W) evaluated plainly."""
    from ghostsearch.train.loop import eval_loader, evaluate

    data = load_data("synthetic", resolution=16)
    loader = eval_loader(data, data.test, torch.device("cpu"))
    torch.manual_seed(2)  # weights whose flip changes the accuracy on these images
    linear = torch.nn.Conv2d(3, 10, 16, bias=False)  # one logit per class from the whole image
    model = torch.nn.Sequential(linear, torch.nn.Flatten()).eval()
    mirrored = torch.nn.Conv2d(3, 10, 16, bias=False)
    with torch.no_grad():
        mirrored.weight.copy_(linear.weight + linear.weight.flip(3))
    both = torch.nn.Sequential(mirrored, torch.nn.Flatten()).eval()
    flip = evaluate(model, loader, amp=False, flip=True)
    assert flip == evaluate(both, loader, amp=False)
    assert flip != evaluate(model, loader, amp=False)


def test_tta_noise_evaluates_each_finished_unit_once_and_checks_its_record(tmp_path, capsys):
    """Four units of two arms trained like a confirmation's: one row each, the plain test
    accuracy the recorded one; a rerun adds nothing; other data is refused in one line."""
    from ghostsearch import ConfigError
    from ghostsearch.bench.tta_noise import main
    from ghostsearch.train.full import ModelSpec, train_full

    spec = DataSpec("synthetic", val_size=40, train_subset=64, resolution=16)
    data = spec.load(progress=False)
    units = tmp_path / "study" / "confirm"
    for width in (0.3, 0.5):
        cfg = reference_config(width, num_classes=10, resolution=16, stem_stride=1)
        for seed in (0, 1):
            train_full(ModelSpec(config=cfg.to_dict()), data, Recipe(epochs=1, batch_size=32),
                       units / f"GhostNet_{width}x-seed{seed}", seed=seed, log=lambda s: None)
    (units / "GhostNet_0.3x-seed2").mkdir()  # a unit not started: skipped
    out = tmp_path / "tta.csv"
    args = ["--units", str(units), "--data", "synthetic", "--val-size", "40",
            "--train-subset", "64", "--resolution", "16", "--out", str(out), "--boot", "50"]
    assert main(args) == 0
    rows = list(csv.DictReader(out.open()))
    assert sorted((r["arm"], r["seed"]) for r in rows) == [
        (f"study/GhostNet_{w}x", s) for w in ("0.3", "0.5") for s in ("0", "1")]
    assert all(float(r["test_plain"]) == float(r["recorded_test"]) for r in rows)
    printed = capsys.readouterr().out
    assert "4 runs in 2 arms" in printed and "test_flip: pooled sd" in printed
    assert "(2 df)" in printed and "sd flip/plain" in printed
    assert main(args) == 0  # resumed: every unit is in the CSV already
    assert len(list(csv.DictReader(out.open()))) == 4
    assert "seed 0: val" not in capsys.readouterr().out
    out.unlink()  # a unit whose record says another test accuracy was trained on other data
    record = units / "GhostNet_0.5x-seed1" / "record.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "test_acc": 99.0}))
    with pytest.raises(ConfigError, match=r"GhostNet_0.5x-seed1: re-evaluated test 10.00% is "
                                          r"not the recorded 99.00%"):
        main(args)


def test_depth_full_data_sets_the_two_recipes_side_by_side(tmp_path):
    """On made-up runs where depth costs 1 point a block under the short recipe and nothing
    under the long one: the short rho is -1, the long one near 0, and an architecture without
    a finished long run (an epoch short) is left out of the paired figures."""
    import pandas as pd

    from ghostsearch.bench.depth_full_data import main

    archs = [("a", 11, 90.0), ("b", 12, 90.0), ("c", 17, 90.0), ("d", 18, 90.0)]  # one size
    choice = {"shallow": [{"arch_id": a, "blocks": b, "mflops": m} for a, b, m in archs[:2]],
              "deep": [{"arch_id": a, "blocks": b, "mflops": m} for a, b, m in archs[2:]]}
    (tmp_path / "choice.json").write_text(json.dumps(choice))
    gt = ["arch_id,seed,val_acc,test_acc"]
    long_val = {"a": 76.0, "b": 75.0, "c": 76.5, "d": 75.5}
    for a, blocks, _ in archs:
        gt.append(f"{a},0,{80 - blocks},{79 - blocks}")
        folder = tmp_path / "units" / f"{a}-seed0"
        folder.mkdir(parents=True)
        epochs = 6 if a != "d" else 5  # d is unfinished
        (folder / "record.json").write_text(json.dumps({
            "recipe": {"epochs": 6}, "history": [{}] * epochs, "val_acc": long_val[a],
            "test_acc": long_val[a] - 0.5, "train_seconds": 1200.0}))
    (tmp_path / "runs.csv").write_text("\n".join(gt) + "\n")
    out = tmp_path / "depth.csv"
    assert main(["--choice", str(tmp_path / "choice.json"), "--units", str(tmp_path / "units"),
                 "--ground-truth", str(tmp_path / "runs.csv"), "--out", str(out)]) == 0
    rows = pd.read_csv(out)
    assert rows.full_seeds.tolist() == [1, 1, 1, 0]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["trained"] == "3 of 4"
    short = summary["recipes"]["ground-truth (12 epochs, 10,000 images)"]["val"]
    long = summary["recipes"]["full-data (6 epochs, 48,000 images)"]["val"]
    assert short["n"] == long["n"] == 3 and short["rho"] == pytest.approx(-1.0)
    assert abs(long["rho"]) < 1.0 and long["shallow_minus_deep"] == pytest.approx(-1.0)
    assert summary["ground-truth, all chosen"]["val"]["n"] == 4
