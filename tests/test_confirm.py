"""The confirm stage: units through the study's storage, verdicts from the pooled noise, the
report and best_arch.json, resume, and bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings

import optuna
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from ghostsearch.cli import main
from ghostsearch.confirm import Candidate, busy_seconds, verdicts
from ghostsearch.search.settings import DataSpec, SearchSettings
from ghostsearch.search.workers import run_trials
from ghostsearch.spaces.space import space_from_dict
from ghostsearch.train.recipe import Recipe

SPACE = {
    "name": "tiny", "deployment": {"resolution": 64, "num_classes": 10, "stem_stride": 2},
    "width": [0.3, 0.5, 1.0],
    "defaults": {"ghost_ratio": [2, 4], "cheap_kernel": [1, 3], "kernel": [3, 5],
                 "expansion": [0.5, 1.0], "se": ["none", "reference"]},
    "stages": {f"stage{i}": {"depth": [1, 2] if i > 1 else [1]} for i in range(1, 7)},
}
SPACE["stages"]["stage4"] = {"depth": [2, 4]}
SPACE["stages"]["stage6"] = {"depth": [3, 5]}
DATA = ["--data", "synthetic", "--train-subset", "64", "--val-size", "40", "--resolution",
        "16", "--device", "cpu", "--epochs", "1"]


def search(tmp_path, trials=4, name="s"):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    settings = SearchSettings(
        study_name=name, storage=url, space=space_from_dict(SPACE, "tiny"),
        data=DataSpec("synthetic", val_size=40, train_subset=64, resolution=16),
        protocol=Recipe(epochs=1, batch_size=32), budget_flops=9_000_000, trials=trials,
        device="cpu")
    return run_trials(settings, show_progress=False), url


def test_confirm_end_to_end_and_resume(tmp_path, capsys):
    study, url = search(tmp_path)
    out = tmp_path / "out"
    args = ["confirm", "--study-name", "s", "--storage", url, "--out", str(out), "--top", "1",
            "--seeds", "2", "--n-jobs", "1", *DATA]
    assert main(args) == 0
    printed = capsys.readouterr().out
    rows = pd.read_csv(out / "confirmed.csv").to_dict("records")
    keys = [r["key"] for r in rows]
    assert keys[0].startswith("trial-") and "GhostNet 1.0x" in keys
    assert all(r["seeds"] == 2 for r in rows)
    meta = json.loads((out / "best_arch.json").read_text())["metadata"]
    assert meta["confirmed"]["key"] == keys[0] and meta["val_acc"] is not None
    assert meta["confirmed"]["seeds"] == 2 and "verdict" in meta["confirmed"]
    # the winner's verdict is its row of the table, in the words of the pooled comparison
    assert meta["confirmed"]["verdict"] == rows[0]["verdict"]
    assert rows[0]["decision"] in ("beats", "loses to", "equivalent", "inconclusive",
                                   "no noise estimate")  # generated images: chance for all
    report = (out / "report.md").read_text()
    assert "## Confirmed (long protocol" in report and (out / "confirmed.png").exists()
    verdict = report.split("## Verdict\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert verdict[0].startswith(f"- {keys[0]} (") and meta["confirmed"]["verdict"] in verdict[0]
    assert verdict[2].startswith(f"- units: {len(keys) * 2} of {len(keys) * 2} done")
    assert report.index("## Verdict") < report.index("## Setting")
    assert "confirmed winner: trial-" in printed
    confirm = optuna.load_study(study_name="s-confirm", storage=url)
    done = len(confirm.get_trials())
    assert done == len(keys) * 2
    assert main(args) == 0  # everything is done: resumes to nothing new
    assert len(optuna.load_study(study_name="s-confirm", storage=url).get_trials()) == done


def test_no_train_writes_the_verdict_of_the_finished_units_and_trains_nothing(tmp_path,
                                                                             capsys):
    study, url = search(tmp_path)
    out = tmp_path / "out"
    args = ["confirm", "--study-name", "s", "--storage", url, "--out", str(out), "--top", "1",
            "--n-jobs", "1", *DATA]
    assert main([*args, "--seeds", "1", "--no-train"]) == 0  # nothing finished: no files
    assert "the verdict of the 0 unit(s) finished so far" in capsys.readouterr().out
    assert not (out / "confirmed.csv").exists()
    assert main([*args, "--seeds", "1"]) == 0
    capsys.readouterr()
    assert main([*args, "--seeds", "2", "--no-train"]) == 0
    printed = capsys.readouterr().out
    confirm = optuna.load_study(study_name="s-confirm", storage=url)
    states = [t.state.name for t in confirm.get_trials()]
    n = states.count("COMPLETE")
    assert "WAITING" not in states  # a look changes nothing: no second seeds queued
    assert f"the verdict of the {n} unit(s) finished so far; {n} left" in printed
    rows = pd.read_csv(out / "confirmed.csv")
    assert (rows.seeds == 1).all() and len(rows) == n


def test_more_seeds_add_only_the_new_units_and_fewer_are_refused(tmp_path, capsys):
    _, url = search(tmp_path)
    out = tmp_path / "out"
    args = ["confirm", "--study-name", "s", "--storage", url, "--out", str(out), "--top", "1",
            "--n-jobs", "1", *DATA]
    assert main([*args, "--seeds", "1"]) == 0
    first = optuna.load_study(study_name="s-confirm", storage=url).get_trials()
    n_keys = len(first)
    assert main([*args, "--seeds", "2"]) == 0
    trials = optuna.load_study(study_name="s-confirm", storage=url).get_trials()
    assert len(trials) == 2 * n_keys  # the seed-0 units were not trained again
    assert [t.datetime_complete for t in trials[:n_keys]] == [
        t.datetime_complete for t in first]
    assert sorted(t.user_attrs["seed"] for t in trials) == [0] * n_keys + [1] * n_keys
    rows = pd.read_csv(out / "confirmed.csv").to_dict("records")
    assert all(r["seeds"] == 2 for r in rows) and len(rows) == n_keys
    capsys.readouterr()
    assert main([*args, "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: study 's-confirm' was started with 2 seeds; pass --seeds 2 or more")


def test_units_run_the_verdicts_inputs_first_seed_by_seed():
    from ghostsearch.confirm import Candidate, unit_order

    cands = [Candidate(k, {}, 1, k.startswith("GhostNet")) for k in
             ("trial-4", "trial-7", "trial-6", "GhostNet 1.2x", "GhostNet 1.0x")]
    assert unit_order(cands, 2) == [
        ("trial-4", 0), ("GhostNet 1.2x", 0), ("GhostNet 1.0x", 0),
        ("trial-4", 1), ("GhostNet 1.2x", 1), ("GhostNet 1.0x", 1),
        ("trial-7", 0), ("trial-6", 0), ("trial-7", 1), ("trial-6", 1)]
    assert unit_order(cands[:1], 3) == [("trial-4", 0), ("trial-4", 1), ("trial-4", 2)]

def test_parallel_workers_split_the_units_each_once(tmp_path, capsys):
    _, url = search(tmp_path)
    out = tmp_path / "out"
    assert main(["confirm", "--study-name", "s", "--storage", url, "--out", str(out), "--top",
                 "2", "--seeds", "2", "--n-jobs", "2", *DATA]) == 0
    assert "2 worker(s)" in capsys.readouterr().out
    trials = optuna.load_study(study_name="s-confirm", storage=url).get_trials()
    done = [(t.user_attrs["key"], t.user_attrs["seed"]) for t in trials
            if t.state == optuna.trial.TrialState.COMPLETE]
    rows = pd.read_csv(out / "confirmed.csv")
    assert sorted(done) == sorted((k, s) for k in rows.key for s in (0, 1))  # each unit once
    assert (rows.seeds == 2).all() and rows.test_mean.notna().all()


@pytest.mark.parametrize("extra, message", [
    (["--top", "0"], "error: --top 0: must be >= 1"),
    (["--seeds", "0"], "error: --seeds 0: must be >= 1"),
    (["--recipe", "forever"], "error: --recipe forever: neither a named recipe "
                              "(full-data, ground-truth, onecycle-cutout) nor a file"),
    (["--n-jobs", "0"], "error: --n-jobs 0: must be >= 1"),
])
def test_bad_options_are_one_line_and_write_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    code = main(["confirm", "--study-name", "s", "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(message) and len(err.splitlines()) == 1
    assert not out.exists()


def test_missing_or_untrained_study_is_one_line_and_writes_nothing(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["confirm", "--study-name", "nope"]) == 2
    assert "error: --study-name 'nope': no results/nope/study.db" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(study_name="e", storage=url, direction="maximize")
    assert main(["confirm", "--study-name", "e", "--storage", url, "--out", "o"]) == 2
    assert "has no completed trial within its limits" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["e"]


def test_verdict_words_follow_the_pooled_interval():
    ref = Candidate("GhostNet 1.2x", {}, 197_962_656, True)
    found = Candidate("trial-31", {}, 180_610_000, False)
    runs = lambda key, accs: [{"key": key, "seed": i, "test_acc": a, "val_acc": a}  # noqa: E731
                              for i, a in enumerate(accs)]
    # one arm with no spread cannot make the interval exact: the noise is pooled over both
    rows = runs("trial-31", [70.0, 70.0, 70.0]) + runs("GhostNet 1.2x", [67.0, 68.0, 69.0])
    [r] = [v for v in verdicts([found, ref], rows) if v["key"] == "trial-31"]
    sd = math.sqrt(2 / 4)  # pooled: (0 + 2) / (2 + 2)
    assert r["noise_sd"] == pytest.approx(sd) and r["noise_df"] == 4
    assert r["ci_half"] == pytest.approx(2.776445 * sd * math.sqrt(2 / 3), rel=1e-5)
    assert r["verdict"] == (f"beats GhostNet 1.2x (198 MFLOPs) by 2.00 ± {r['ci_half']:.2f} "
                            "points at 181 MFLOPs")
    assert not math.isnan(r["welch_half"]) and r["welch_half"] > r["ci_half"]
    # the same runs as one of up to 8 verdicts (--until-decided from 3 to 10 seeds): each is
    # held to 0.05 / 8, and this one no longer clears 0
    [r8] = [v for v in verdicts([found, ref], rows, looks=8) if v["key"] == "trial-31"]
    assert r8["comparisons"] == 8 and r8["looks"] == 8
    assert r8["ci_half"] == pytest.approx(
        scipy_stats.t.ppf(1 - 0.05 / 16, 4) * sd * math.sqrt(2 / 3), rel=1e-6)
    assert r8["decision"] == "inconclusive" and r8["verdict"].endswith(
        "(interval adjusted for up to 8 looks)")
    rows = runs("trial-31", [68.0, 70.0, 69.0]) + runs("GhostNet 1.2x", [67.0, 68.0, 69.0])
    [r] = [v for v in verdicts([found, ref], rows) if v["key"] == "trial-31"]
    assert r["verdict"].startswith(
        "inconclusive against GhostNet 1.2x (198 MFLOPs): +1.00 ± ")
    assert f"about {r['seeds_needed']} seeds an arm" in r["verdict"]
    rows = runs("trial-31", [64.0, 65.0, 66.0]) + runs("GhostNet 1.2x", [67.0, 68.0, 69.0])
    [r] = [v for v in verdicts([found, ref], rows) if v["key"] == "trial-31"]
    assert r["verdict"].startswith("loses to GhostNet 1.2x (198 MFLOPs) by 3.00 ± ")
    rows = runs("trial-31", [70.0]) + runs("GhostNet 1.2x", [67.0])
    [r] = [v for v in verdicts([found, ref], rows) if v["key"] == "trial-31"]
    assert r["verdict"] == "+3.00 points against GhostNet 1.2x (198 MFLOPs) at 181 MFLOPs: " \
                           "one seed, no interval"


def test_busy_seconds_count_overlaps_once_and_skip_pauses():
    from datetime import datetime, timedelta

    t0 = datetime(2026, 1, 1)

    def at(a, b):
        return (t0 + timedelta(minutes=a), t0 + timedelta(minutes=b))

    # two workers overlapping for 0-10 and 5-12, a pause, then 30-40 and a unit inside it
    intervals = [at(30, 40), at(0, 10), at(5, 12), at(32, 35)]
    assert busy_seconds(intervals) == (12 + 10) * 60
    assert busy_seconds([]) == 0.0


def test_the_winner_has_every_seed_and_the_best_validation_not_test():
    from ghostsearch.confirm import winner

    rows = [{"key": "trial-1", "baseline": False, "seeds": 3, "val_mean": 60.0, "test_mean": 70},
            {"key": "trial-2", "baseline": False, "seeds": 3, "val_mean": 61.0, "test_mean": 50},
            {"key": "trial-3", "baseline": False, "seeds": 2, "val_mean": 90.0, "test_mean": 90},
            {"key": "GhostNet 1.2x", "baseline": True, "seeds": 3, "val_mean": 99.0,
             "test_mean": 99}]
    assert winner(rows, 3)["key"] == "trial-2"
    assert winner(rows, 2)["key"] == "trial-3"
    assert winner(rows, 4) is None


def _units(url: str) -> list:
    return optuna.load_study(study_name="s-confirm", storage=url).get_trials()


def test_a_unit_that_raises_is_recorded_and_done_by_a_retry_each_unit_once(tmp_path,
                                                                           monkeypatch,
                                                                           capsys):
    import ghostsearch.train.full as train_mod

    study, url = search(tmp_path)
    real, calls = train_mod.train_full, []

    def flaky(*args, **kwargs):
        calls.append(kwargs.get("seed"))
        if len(calls) == 1:
            raise RuntimeError("out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr("ghostsearch.confirm.train_full", flaky)
    args = ["confirm", "--study-name", "s", "--storage", url, "--out", str(tmp_path / "o"),
            "--top", "1", "--seeds", "1", "--n-jobs", "1", *DATA]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "failed (RuntimeError: out of memory (simulated)); queued again" in printed
    trials = _units(url)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["reason"].startswith("RuntimeError")
    done = [(t.user_attrs["key"], t.user_attrs["seed"]) for t in trials
            if t.state == optuna.trial.TrialState.COMPLETE]
    planned = {(t.user_attrs["key"], t.user_attrs["seed"]) for t in trials}
    assert len(done) == len(set(done)) and set(done) == planned  # every unit, each once
    retried = [t for t in trials if t.user_attrs.get("retries") == 1]
    assert retried and retried[0].user_attrs["previous_failure"].startswith("RuntimeError")


def test_a_worker_killed_mid_unit_is_taken_back_by_a_rerun(tmp_path):
    """SIGKILL of the worker mid-unit, then an immediate rerun with the default stale time:
    the worker ran on this machine and its process is gone, so its unit is taken back at once
    and every unit completes exactly once."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    study, url = search(tmp_path)
    root = Path(__file__).resolve().parent.parent
    args = [sys.executable, str(root / "scripts" / "confirm.py"), "--study-name", "s",
            "--storage", url, "--out", str(tmp_path / "o"), "--top", "1", "--seeds", "2",
            "--n-jobs", "1", *DATA[:-2], "--epochs", "20"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            running = [t for t in _units(url) if t.state == optuna.trial.TrialState.RUNNING]
        except KeyError:
            continue
        if running and running[0].user_attrs.get("pid") == proc.pid:
            break
    os.kill(proc.pid, signal.SIGKILL)  # no handler runs: the unit stays RUNNING
    proc.communicate(timeout=60)
    assert [t.state for t in _units(url)].count(optuna.trial.TrialState.RUNNING) == 1
    r = subprocess.run(args, capture_output=True, text=True, timeout=900)  # 900 s stale time
    assert r.returncode == 0, r.stderr
    assert f"(its worker (pid {proc.pid} on this machine) is gone (killed))" in r.stdout
    trials = _units(url)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    done = [(t.user_attrs["key"], t.user_attrs["seed"]) for t in trials
            if t.state == optuna.trial.TrialState.COMPLETE]
    planned = {(t.user_attrs["key"], t.user_attrs["seed"]) for t in trials}
    assert len(done) == len(set(done)) and set(done) == planned
    rows = pd.read_csv(tmp_path / "o" / "confirmed.csv")
    assert (rows.seeds == 2).all()  # no arm short of the seeds asked


def test_confirm_refuses_another_validation_split_and_names_the_studys(tmp_path, capsys):
    study, url = search(tmp_path)
    args = ["confirm", "--study-name", "s", "--storage", url, "--out", str(tmp_path / "o"),
            "--top", "1", "--seeds", "1", "--n-jobs", "1", *DATA[:-2], "--epochs", "1"]
    args[args.index("--val-size") + 1] = "30"
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.endswith("pass --val-size 40 --split-seed 0 (the study's) so that no image the "
                        "search selected on is trained on")
    with pytest.raises(KeyError):
        optuna.load_study(study_name="s-confirm", storage=url)  # nothing was queued


def test_seeds_plan_at_the_noise_the_bank_measured(tmp_path):
    """The plan's noise and cost are computed from the bank's runs of the references under
    the same recipe and data (no figure copied into the code); none without two seeds."""
    import statistics

    from ghostsearch.bank import Bank
    from ghostsearch.confirm import BankLink, bank_noise, seeds_plan
    from ghostsearch.stats import pooled_noise, seeds_needed

    bank = Bank(tmp_path / "bank.csv")
    link = BankLink(bank, {"GhostNet 1.2x": "k12", "GhostNet 1.0x": "k10"}, "test")
    assert bank_noise(link) is None and seeds_plan(bank_noise(link), 3) is None
    runs = {"k12": [(67.9, 600.0), (66.2, 700.0), (67.0, 650.0)], "k10": [(65.0, 500.0)]}
    for key, rows in runs.items():
        for seed, (acc, secs) in enumerate(rows):
            bank.add(key, key, seed, acc, acc, secs, "test", threads=1)
    known = bank_noise(link)
    want = pooled_noise({"a": [67.9, 66.2, 67.0]})
    assert known["df"] == 2 and math.isclose(known["sd"], want.sd)
    assert known["unit_cpu_s"] == statistics.median([600.0, 700.0, 650.0, 500.0])
    assert known["source"] == "the reference bank, 4 runs of 2 reference(s)"
    plan = seeds_plan(known, 3, effect=1.0, seeds=3)
    assert plan["seeds"] == seeds_needed(want.sd, 1.0, m=3)
    assert plan["units"] == plan["seeds"] * 4
    assert math.isclose(plan["cpu_hours"], plan["units"] * known["unit_cpu_s"] / 3600)
    # a confirmation's own units, with more degrees of freedom, take over
    done = [{"key": k, "test_acc": 60.0 + d} for k in "abcdefghijkl" for d in (0.0, 0.1, 0.2)]
    mine = seeds_plan(known, 3, effect=1.0, done=done)
    assert mine["source"] == "this confirmation" and mine["seeds"] < plan["seeds"]

def test_export_and_a_rerun_keep_the_confirmed_winner(tmp_path, capsys):
    study, url = search(tmp_path)
    out = tmp_path / "o"
    assert main(["confirm", "--study-name", "s", "--storage", url, "--out", str(out), "--top",
                 "1", "--seeds", "1", "--n-jobs", "1", *DATA]) == 0
    before = (out / "best_arch.json").read_text()
    assert json.loads(before)["metadata"]["confirmed"]
    capsys.readouterr()
    assert main(["export", "--study-name", "s", "--storage", url, "--out", str(out)]) == 0
    assert "the confirmed winner, trial-" in capsys.readouterr().out
    assert (out / "best_arch.json").read_text() == before


def test_until_decided_adds_seeds_to_the_leader_and_the_reference_only(tmp_path, capsys):
    study, url = search(tmp_path)
    args = ["confirm", "--study-name", "s", "--storage", url, "--out", str(tmp_path / "o"),
            "--top", "2", "--seeds", "1", "--n-jobs", "1", "--until-decided", "--max-seeds",
            "3", *DATA]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no unit number out of its range
        assert main(args) == 0
    printed = capsys.readouterr().out
    # generated images leave every model at chance: no spread, no noise estimate, never
    # decided, so the leader and the reference go to --max-seeds and nothing else does
    assert "still no noise estimate at --max-seeds 3" in printed
    # the seeds added round by round count in the units' total: 2 found and 2 reference
    # architectures x 1 seed, then 2 rounds of 2
    tags = [tuple(map(int, m)) for m in re.findall(r"unit (\d+)/(\d+): ", printed)]
    assert sorted({n for n, _ in tags}) == list(range(1, 9)) and max(t for _, t in tags) == 8
    assert all(n <= t for n, t in tags)
    assert main(args) == 0  # a rerun counts them too and trains nothing
    assert "= 4 units (+4 added by --until-decided), 0 to train" in capsys.readouterr().out
    rows = pd.read_csv(tmp_path / "o" / "confirmed.csv").set_index("key")
    ref = next(k for k in rows.index if rows.loc[k, "baseline"])
    # 1 seed, then up to 2 more: 3 verdicts, each adjusted for all of them, in the report too
    confirm = optuna.load_study(study_name="s-confirm", storage=url)
    assert confirm.user_attrs["design"]["max_looks"] == 3 and (rows.looks.dropna() == 3).all()
    leader = json.loads((tmp_path / "o" / "best_arch.json").read_text())["metadata"][
        "confirmed"]["key"]
    assert rows.loc[leader, "seeds"] == rows.loc[ref, "seeds"] == 3
    others = [k for k in rows.index if k not in (leader, ref)]
    assert others and all(rows.loc[k, "seeds"] == 1 for k in others)
    assert main([*args[:-len(DATA)], "--max-seeds", "0", *DATA]) == 2
    assert "--max-seeds 0 is below --seeds 1" in capsys.readouterr().err


def _fake_units(tmp_path, done):
    """A companion study holding finished units `done` {(key, seed): test accuracy}, and a
    round that finishes every waiting unit with the accuracy `acc(key, seed)` gives it."""
    from ghostsearch.confirm import open_confirm_study

    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    confirm = open_confirm_study(study, url, [], {"seeds": 2})
    for i, ((key, seed), acc) in enumerate(done.items()):
        confirm.add_trial(optuna.trial.create_trial(
            params={"unit": i}, distributions={"unit": optuna.distributions.IntDistribution(
                0, 99)}, value=acc,
            user_attrs={"key": key, "seed": seed, "val_acc": acc, "test_acc": acc}))
    cands = [Candidate("trial-1", {}, 1, False), Candidate("GhostNet 1.0x", {}, 1, True)]
    return confirm, cands


def _round(confirm, acc):
    def run_round():
        for _ in confirm.get_trials(states=(optuna.trial.TrialState.WAITING,)):
            trial = confirm.ask()
            key, seed = trial.user_attrs["key"], trial.user_attrs["seed"]
            trial.set_user_attr("val_acc", acc(key, seed))
            trial.set_user_attr("test_acc", acc(key, seed))
            confirm.tell(trial, acc(key, seed))
    return run_round


def test_until_decided_evens_the_arms_before_it_looks(tmp_path, capsys):
    from ghostsearch.confirm import plan_looks
    from ghostsearch.workflow.confirm import until_decided

    def acc(key, seed):  # the found network 5 points up, a little noise
        return (70.0 if key == "trial-1" else 65.0) + [0.3, -0.2, 0.1, -0.4, 0.2][seed]

    # an interrupted round left the found network a seed ahead of the reference
    done = {("trial-1", s): acc("trial-1", s) for s in range(3)}
    done |= {("GhostNet 1.0x", s): acc("GhostNet 1.0x", s) for s in range(2)}
    confirm, cands = _fake_units(tmp_path, done)
    plan_looks(confirm, 4)
    until_decided(confirm, cands, 2, 5, _round(confirm, acc))
    lines = capsys.readouterr().out.splitlines()
    # the reference's missing seed first, no look at 3 against 2; then the verdict at 3 each
    assert lines[0].startswith("trial-1 and GhostNet 1.0x have uneven seeds (3 and 2)")
    assert lines[0].endswith(": GhostNet 1.0x seed 2")
    assert lines[1].startswith("decided at 3 seeds: trial-1 beats GhostNet 1.0x")
    seeds = sorted((t.user_attrs["key"], t.user_attrs["seed"]) for t in confirm.get_trials())
    assert seeds == sorted([*done, ("GhostNet 1.0x", 2)])


def test_until_decided_counts_a_reference_seed_taken_from_the_bank(tmp_path, capsys):
    """Evening the arms with a reference seed the bank holds trains nothing, and is progress."""
    from types import SimpleNamespace

    from ghostsearch.confirm import plan_looks
    from ghostsearch.workflow.confirm import until_decided

    def acc(key, seed):
        return (70.0 if key == "trial-1" else 65.0) + [0.3, -0.2, 0.1, -0.4, 0.2][seed]

    done = {("trial-1", s): acc("trial-1", s) for s in range(3)}
    done |= {("GhostNet 1.0x", s): acc("GhostNet 1.0x", s) for s in range(2)}
    confirm, cands = _fake_units(tmp_path, done)
    bank = SimpleNamespace(stored=lambda key, seed: {
        "val_acc": acc(key, seed), "test_acc": acc(key, seed), "train_seconds": 1.0}
        if key == "GhostNet 1.0x" else None)
    trained = []
    plan_looks(confirm, 4)
    until_decided(confirm, cands, 2, 5, lambda: trained.append(1), bank)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(": GhostNet 1.0x seed 2") and trained == [1]
    assert lines[1].startswith("decided at 3 seeds: trial-1 beats GhostNet 1.0x")


def test_until_decided_does_not_look_while_a_unit_is_unfinished(tmp_path, capsys):
    from ghostsearch.confirm import plan_looks, queue_unit
    from ghostsearch.workflow.confirm import until_decided

    done = {(k, s): 60.0 + s for k in ("trial-1", "GhostNet 1.0x") for s in range(2)}
    confirm, cands = _fake_units(tmp_path, done)
    queue_unit(confirm, "GhostNet 1.0x", 2, 4)
    confirm.ask()  # a worker elsewhere holds the reference's seed 2: RUNNING, not finished
    rounds = []
    plan_looks(confirm, 4)
    until_decided(confirm, cands, 2, 5, lambda: rounds.append(1))
    out = capsys.readouterr().out
    assert out.startswith("1 unit(s) not finished (GhostNet 1.0x seed 2): running in another")
    assert "no verdict looked at, rerun to go on" in out
    assert not rounds and len(confirm.get_trials()) == 5  # nothing queued, nothing trained


def test_until_decided_stops_when_a_round_finishes_nothing(tmp_path, capsys):
    from ghostsearch.confirm import plan_looks
    from ghostsearch.workflow.confirm import until_decided

    done = {(k, s): 60.0 + s + (k == "trial-1") for k in ("trial-1", "GhostNet 1.0x")
            for s in range(2)}
    confirm, cands = _fake_units(tmp_path, done)

    def failing_round():  # every unit fails for good
        for _ in confirm.get_trials(states=(optuna.trial.TrialState.WAITING,)):
            confirm.tell(confirm.ask(), state=optuna.trial.TrialState.FAIL)

    plan_looks(confirm, 8)
    until_decided(confirm, cands, 2, 9, failing_round)
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "the round finished no unit (their failures are in the report); stopped"
    assert len(confirm.get_trials()) == 6


def test_a_unit_finished_by_another_worker_is_dropped_not_failed(tmp_path, monkeypatch):
    """SQLite can hand one WAITING unit to two workers asking at the same moment; the one
    that finishes second drops it (no failure, no retry) and goes on with the next unit."""
    from ghostsearch import reference_config
    from ghostsearch.confirm import open_confirm_study, results, run_units
    from ghostsearch.search.storage import make_storage
    from ghostsearch.train.data import load_data

    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    confirm = open_confirm_study(study, url, [("a", 0), ("a", 1)], {"seeds": 2})
    cfg = reference_config(0.3, num_classes=10, resolution=16, stem_stride=1).to_dict()
    cands = {"a": Candidate("a", cfg, 1.0, False)}
    calls = []

    def fake_train(spec, data, protocol, folder, *, seed, device, log, on_step=None):
        calls.append(seed)
        if len(calls) == 1:  # the other worker finishes this very trial meanwhile
            storage = make_storage(url)
            other = optuna.load_study(study_name="s-confirm", storage=storage)
            running = other.get_trials(states=(optuna.trial.TrialState.RUNNING,))[0]
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name("s-confirm"), running.number)
            for k, v in (("val_acc", 55.0), ("test_acc", 45.0), ("train_seconds", 1.0)):
                storage.set_trial_user_attr(trial_id, k, v)
            other.tell(running.number, 55.0)
            log("epoch 1/1")  # this worker's next beat finds its trial finished
        return {"val_acc": 50.0 + seed, "test_acc": 40.0, "train_seconds": 1.0}

    monkeypatch.setattr("ghostsearch.confirm.train_full", fake_train)
    said = []
    run_units(confirm, cands, load_data("synthetic", resolution=16), Recipe(epochs=1),
              tmp_path, log=said.append)
    assert calls == [0, 1]
    assert any("finished by another worker; dropped here" in line for line in said)
    trials = optuna.load_study(study_name="s-confirm", storage=url).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]  # no FAIL, no retry
    assert trials[0].value == 55.0 and trials[1].value == 51.0
    assert sorted((r["key"], r["seed"]) for r in results(confirm)) == [("a", 0), ("a", 1)]


def test_a_unit_whose_epoch_outlasts_the_stale_time_is_not_taken_back(tmp_path, monkeypatch):
    """Beats come every BEAT_EVERY_S between steps, not only at epoch ends: a worker that
    checks for lost units while a slow unit trains finds it alive, and the unit is trained
    once."""
    import time

    import ghostsearch.confirm as confirm_mod
    import ghostsearch.units as units
    from ghostsearch.units import reclaim

    study, url = search(tmp_path)
    stale = 0.4
    monkeypatch.setattr(units, "BEAT_EVERY_S", 0.05)
    seen: list[int] = []
    calls: list[str] = []

    def slow_train(spec, data, recipe, out, *, seed, device, log, on_step):
        calls.append(f"{json.dumps(spec.config, sort_keys=True)}-{seed}")
        start = time.monotonic()
        step = 0
        while time.monotonic() - start < 3 * stale:  # one "epoch" three stale times long
            time.sleep(0.02)
            step += 1
            on_step(step)
            if step % 15 == 0:  # another worker looks for lost units meanwhile
                seen.append(reclaim(companion, stale))
        return {"val_acc": 50.0, "test_acc": 50.0, "train_seconds": 1.0, "history": []}

    monkeypatch.setattr("ghostsearch.confirm.train_full", slow_train)
    out = tmp_path / "o"
    args = ["confirm", "--study-name", "s", "--storage", url, "--out", str(out), "--top", "1",
            "--seeds", "1", "--n-jobs", "1", "--stale-after", str(stale), "--no-bank",
            "--budget-reference-only", *DATA]
    companion = None

    original = confirm_mod.run_units

    def run_units(confirm, *a, **k):
        nonlocal companion
        companion = confirm
        return original(confirm, *a, **k)

    monkeypatch.setattr(confirm_mod, "run_units", run_units)
    import ghostsearch.workflow.confirm as confirm_workflow

    monkeypatch.setattr(confirm_workflow, "run_units", run_units)
    assert main(args) == 0
    assert seen and not any(seen)  # every check found the unit alive
    assert len(calls) == len(set(calls)) == 2  # the candidate and the reference, once each
    units = _units(url)
    assert [t.state for t in units].count(optuna.trial.TrialState.COMPLETE) == 2
    assert [t.state for t in units].count(optuna.trial.TrialState.FAIL) == 0


def test_a_rerun_with_more_seeds_is_a_look_and_the_adjustment_counts_it(tmp_path, capsys):
    _, url = search(tmp_path)
    out = tmp_path / "o"
    args = ["confirm", "--study-name", "s", "--storage", url, "--out", str(out), "--top", "1",
            "--n-jobs", "1", "--budget-reference-only", *DATA]

    def comparisons() -> int:
        rows = pd.read_csv(out / "confirmed.csv").to_dict("records")
        return int(next(r["comparisons"] for r in rows if not r["baseline"]))

    assert main([*args, "--seeds", "2"]) == 0
    assert comparisons() == 1  # one candidate, one look
    assert main([*args, "--seeds", "2"]) == 0  # the same units: the same look
    assert comparisons() == 1
    assert main([*args, "--seeds", "3"]) == 0  # new seeds: a second look
    assert comparisons() == 2
    assert main([*args, "--seeds", "3", "--no-train"]) == 0
    assert comparisons() == 2
    confirm = optuna.load_study(study_name="s-confirm", storage=url)
    assert [sorted(n for _, n in s) for s in confirm.user_attrs["looks_taken"]] == [[2, 2],
                                                                                  [3, 3]]


def test_an_interrupt_while_a_finished_unit_is_recorded_waits_for_the_record(tmp_path,
                                                                             monkeypatch):
    """Ctrl-C that lands between a unit's training and its record: the record completes
    first, then the interrupt stops the worker; the unit is COMPLETE, not lost or requeued."""
    import os
    import signal

    from ghostsearch.confirm import Candidate as C
    from ghostsearch.confirm import results, run_units
    from ghostsearch.train.data import load_data

    _, url = search(tmp_path)
    confirm = optuna.create_study(study_name="s-confirm", storage=url, direction="maximize")
    study = optuna.load_study(study_name="s", storage=url)
    t = next(t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
             and t.user_attrs.get("config"))
    cand = C("trial-x", t.user_attrs["config"], t.user_attrs["flops"], False)
    confirm.enqueue_trial({"unit": 0}, user_attrs={"key": "trial-x", "seed": 0})
    real_tell = confirm.tell

    def tell_after_sigint(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)  # arrives inside the record
        return real_tell(*a, **k)

    monkeypatch.setattr(confirm, "tell", tell_after_sigint)
    data = load_data("synthetic", resolution=16, train_subset=64, val_size=40, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_units(confirm, {"trial-x": cand}, data, Recipe(epochs=1, batch_size=32),
                  tmp_path / "o", log=lambda m: None)
    assert [(r["key"], r["seed"]) for r in results(confirm)] == [("trial-x", 0)]
    states = [t.state for t in confirm.get_trials()]
    assert states == [optuna.trial.TrialState.COMPLETE]


def test_a_silent_unit_of_another_machine_is_taken_back_after_the_stale_time(tmp_path):
    """A worker elsewhere cannot be checked for life: its unit is taken back once its last
    beat (an aware UTC time, or a naive local one written before beats carried a zone) is
    older than the stale time, and not before."""
    import datetime

    from ghostsearch.units import reclaim

    url = f"sqlite:///{tmp_path / 'c.db'}"
    confirm = optuna.create_study(study_name="c", storage=url)
    now = datetime.datetime.now(datetime.timezone.utc)
    beats = {"fresh": now.isoformat(),
             "old": (now - datetime.timedelta(seconds=120)).isoformat(),
             "old-naive": (datetime.datetime.now() - datetime.timedelta(seconds=120)
                           ).isoformat()}
    for i, (key, beat) in enumerate(beats.items()):
        confirm.enqueue_trial({"unit": i}, user_attrs={"key": key, "seed": 0})
        t = confirm.ask()
        t.suggest_int("unit", 0, 2)
        t.set_user_attr("alive_at", beat)
        t.set_user_attr("host", "another-machine")
        t.set_user_attr("pid", 1)
    said = []
    assert reclaim(confirm, 60.0, said.append) == 2
    assert sorted(line.split(",")[0] for line in said) == ["old", "old-naive"]
    assert all("stale: no beat for 12" in line for line in said)
    waiting = confirm.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert sorted(t.user_attrs["key"] for t in waiting) == ["old", "old-naive"]


def test_a_rerun_may_leave_out_the_reference_over_the_budget_but_not_add_arms(tmp_path,
                                                                              capsys):
    _, url = search(tmp_path)
    out = tmp_path / "o"
    args = ["confirm", "--study-name", "s", "--storage", url, "--out", str(out), "--seeds", "1",
            "--n-jobs", "1", *DATA]
    assert main([*args, "--top", "1"]) == 0
    keys = set(pd.read_csv(out / "confirmed.csv").key)
    assert "GhostNet 1.0x" in keys
    assert main([*args, "--top", "1", "--budget-reference-only", "--no-train"]) == 0
    assert set(pd.read_csv(out / "confirmed.csv").key) == keys - {"GhostNet 1.0x"}
    capsys.readouterr()
    assert main([*args, "--top", "2", "--no-train"]) == 2
    assert "confirms other architectures" in capsys.readouterr().err


def test_run_confirm_is_the_command_as_a_call(tmp_path):
    """`ghostsearch.run_confirm(ConfirmSettings(...))` gives a Verdict holding what
    confirmed.csv and best_arch.json hold; a second call with no_train trains nothing and
    gives the same rows."""
    import ghostsearch

    _, url = search(tmp_path)
    out = tmp_path / "out"
    data = DataSpec("synthetic", val_size=40, train_subset=64, resolution=16)
    s = ghostsearch.ConfirmSettings(study_name="s", storage=url, out=str(out), top=1, seeds=2,
                                    recipes=(Recipe(epochs=1, batch_size=32,
                                                    name="ground-truth"),),
                                    budget_reference_only=True, data=data, device="cpu",
                                    n_jobs=1)
    v = ghostsearch.run_confirm(s)
    assert v.recipes == ("ground-truth",) and v.across is None
    rows = pd.read_csv(out / "confirmed.csv").to_dict("records")
    assert [r["key"] for r in v.tables["ground-truth"]] == [r["key"] for r in rows]
    assert len(rows) == 2 and all(r["seeds"] == 2 for r in rows)  # no 1.0x arm
    assert v.winner is not None and v.of(v.winner["key"])["verdict"] == v.winner["verdict"]
    meta = json.loads(v.best_path.read_text())["metadata"]["confirmed"]
    assert meta["key"] == v.winner["key"] and v.report["md"].exists()
    assert list(v.frame().recipe.unique()) == ["ground-truth"]
    again = ghostsearch.run_confirm(dataclasses.replace(s, no_train=True))
    assert [r["test_mean"] for r in again.tables["ground-truth"]] == [
        r["test_mean"] for r in v.tables["ground-truth"]]
    with pytest.raises(KeyError, match="'trial-999' is not among"):
        v.of("trial-999")


def test_a_confirmation_under_another_recipe_keeps_the_first_ones_verdict(tmp_path,
                                                                          stub_trainer):
    """best_arch.json holds the winner's block under every recipe it was confirmed under: a
    later run under recipe B alone adds B's and keeps A's."""
    import ghostsearch

    _, url = search(tmp_path)
    out = tmp_path / "out"
    data = DataSpec("synthetic", val_size=40, train_subset=64, resolution=16)
    a, b = Recipe(epochs=1, batch_size=32, name="a"), Recipe(epochs=2, batch_size=32, name="b")
    s = ghostsearch.ConfirmSettings(study_name="s", storage=url, out=str(out), top=1, seeds=2,
                                    recipes=(a,), budget_reference_only=True, data=data,
                                    device="cpu", n_jobs=1)
    first = ghostsearch.run_confirm(s)
    second = ghostsearch.run_confirm(dataclasses.replace(s, recipes=(b,)))
    meta = json.loads((out / "best_arch.json").read_text())["metadata"]
    assert set(meta["confirmed_under"]) == {"a", "b"}
    assert meta["confirmed_under"]["a"]["verdict"] == first.winner["verdict"]
    assert meta["confirmed_under"]["b"]["verdict"] == second.winner["verdict"]
    assert meta["confirmed"]["recipe"]["name"] == "b"  # the latest run's first recipe


def test_confirm_settings_refuse_bad_counts_in_one_line():
    import ghostsearch

    with pytest.raises(ghostsearch.ConfigError, match=r"^--seeds 0: must be >= 1$"):
        ghostsearch.ConfirmSettings(study_name="s", seeds=0)
    with pytest.raises(ghostsearch.ConfigError, match=r"^--max-seeds 2 is below --seeds 3$"):
        ghostsearch.ConfirmSettings(study_name="s", until_decided=True, max_seeds=2)


def test_the_design_is_stored_at_creation_and_every_look_reads_it(tmp_path, stub_trainer):
    """The companion stores its design when it is made: one look, the 95% level, the 0.5
    point margin and the arms compared. A later look (here a --no-train call) reads the
    stored level, not the code's default; --until-decided raises the stored looks, and a
    call without it keeps them."""
    from ghostsearch.confirm import design
    from ghostsearch.stats import t_quantile

    _, url = search(tmp_path)
    out = tmp_path / "o"
    args = ["confirm", "--study-name", "s", "--storage", url, "--out", str(out), "--top", "1",
            "--n-jobs", "1", "--budget-reference-only", "--no-bank", *DATA]
    assert main([*args, "--seeds", "2"]) == 0
    confirm = optuna.load_study(study_name="s-confirm", storage=url)
    stored = confirm.user_attrs["design"]
    cands = confirm.user_attrs["meta"]["candidates"]
    assert stored == {"max_looks": 1, "level": 0.95, "margin": 0.5,
                      "arms": [c["key"] for c in cands]}  # the candidate and its reference

    def row() -> dict:
        return next(r for r in pd.read_csv(out / "confirmed.csv").to_dict("records")
                    if not r["baseline"])

    before = row()
    confirm.set_user_attr("design", {**stored, "level": 0.99})
    assert main([*args, "--seeds", "2", "--no-train"]) == 0
    after = row()
    df = int(after["noise_df"])
    assert after["ci_half"] == pytest.approx(
        before["ci_half"] * t_quantile(0.995, df) / t_quantile(0.975, df))
    confirm.set_user_attr("design", stored)
    assert main([*args, "--seeds", "2", "--until-decided", "--max-seeds", "4"]) == 0
    assert design(confirm).max_looks == 3  # the first round, then a look a seed
    assert main([*args, "--seeds", "2", "--no-train"]) == 0
    assert int(row()["comparisons"]) == 3
