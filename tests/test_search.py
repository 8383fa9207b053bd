from __future__ import annotations

import dataclasses
import json
import re

import optuna
import pytest
import torch

import ghostsearch
import ghostsearch.search.objective as objective_mod
import ghostsearch.search.study as study_mod
from ghostsearch import (
    ConfigError,
    StudyError,
    analytic_counts,
    build_model,
    count_flops,
    load_config,
)
from ghostsearch.report.export import export_best, export_trial
from ghostsearch.report.frame import pareto_front, summary_table, trials_frame
from ghostsearch.search.settings import DataSpec, SearchSettings, smallest_flops
from ghostsearch.search.study import baseline_widths, best_feasible, trained_count
from ghostsearch.search.workers import run_trials
from ghostsearch.spaces.limits import Limits
from ghostsearch.spaces.space import space_from_dict
from ghostsearch.train.recipe import Recipe

TINY_SPACE = {
    "name": "tiny",
    "deployment": {"resolution": 64, "num_classes": 10, "stem_stride": 2},
    "width": [0.3, 0.5, 0.75, 1.0],
    "defaults": {"ghost_ratio": [2, 4], "cheap_kernel": [1, 3], "kernel": [3, 5],
                 "expansion": [0.5, 1.0], "se": ["none", "reference"]},
    "stages": {f"stage{i}": {"depth": [1, 2] if i > 1 else [1]} for i in range(1, 7)},
}


@pytest.fixture
def space():
    s = dict(TINY_SPACE)
    s["stages"] = dict(TINY_SPACE["stages"])
    s["stages"]["stage4"] = {"depth": [2, 4]}
    s["stages"]["stage6"] = {"depth": [3, 5]}
    return space_from_dict(s, "tiny")


def settings(tmp_path, space, **kw):
    base = dict(
        study_name="t", storage=f"sqlite:///{tmp_path / 'study.db'}", space=space,
        data=DataSpec("synthetic", val_size=40, train_subset=64, resolution=16),
        protocol=Recipe(epochs=2, batch_size=32), budget_flops=9_000_000, trials=6,
        seed=0, device="cpu")
    base.update(kw)
    return SearchSettings(**base)


@pytest.fixture
def trained_configs(monkeypatch):
    """Record every config that reaches the proxy trainer."""
    seen = []
    real = objective_mod.train_proxy

    def spy(cfg, *args, **kwargs):
        seen.append(cfg)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(objective_mod, "train_proxy", spy)
    return seen


def test_search_trains_only_within_the_band_and_records_everything(tmp_path, space,
                                                                   trained_configs):
    s = settings(tmp_path, space, budget_flops=2_500_000)  # about 70% of the space is over it
    study = run_trials(s, show_progress=False)
    trials = study.get_trials()
    assert trained_count(study) == 6 == len(trained_configs)
    sampled = [t for t in trials if not t.user_attrs.get("baseline")]
    assert sampled
    for t in trials:
        a = t.user_attrs
        assert a["flops"] == analytic_counts(load_config_from(a)).flops
        if a.get("trained") and t.state == optuna.trial.TrialState.COMPLETE:
            assert len(a["val_curve"]) == 2 and a["val_acc"] == a["val_curve"][-1]
            assert a["test_acc"] is not None and a["train_seconds"] > 0 and "seed" in a
            ran = a["ran_on"]  # what trained it, as every confirmation unit records
            assert (ran["device"], ran["threads"]) == ("cpu", torch.get_num_threads())
            assert ran["ghostsearch"] == ghostsearch.__version__ and "git_commit" in ran
    for t in sampled:  # the sampler proposes in [0.85 B, B] only, and says how many draws
        assert 0.85 * 2_500_000 <= t.user_attrs["flops"] <= 2_500_000
        assert t.user_attrs["in_band"] and t.user_attrs["trained"]
        assert t.user_attrs["band_draws"] >= 1
        assert space.contains(t.params) or space.contains(space.snap(t.params))
    # the trainer saw proxy configs (stride-1 stem, 16 px)
    for cfg in trained_configs:
        assert (cfg.resolution, cfg.stem_stride) == (16, 1)


def test_a_point_outside_the_limits_is_infeasible_never_trained_never_valued(
        tmp_path, space, trained_configs):
    s = settings(tmp_path, space, budget_flops=2_500_000, baselines=False, trials=1)
    study = study_mod.open_study(s)
    big = space.reference_params(1.0)  # over 2.5 MFLOPs
    small = space.smallest_params()  # under the band
    assert analytic_counts(space.build_config(big)).flops > 2_500_000
    assert analytic_counts(space.build_config(small)).flops < 0.85 * 2_500_000
    study.enqueue_trial(big)
    study.enqueue_trial(small)
    study = run_trials(s, show_progress=False)
    over, below = study.get_trials()[:2]
    for t in (over, below):
        assert t.state == optuna.trial.TrialState.PRUNED and t.value is None
        assert t.user_attrs["decision"] == "skip" and "trained" not in t.user_attrs
    assert over.constraints["flops"] > 0 and over.user_attrs["reason"].startswith("over budget")
    assert below.constraints["flops"] <= 0 < below.constraints["band"]
    assert below.user_attrs["reason"].startswith("below the band: [2.125, 2.5] MFLOPs")
    assert len(trained_configs) == 1  # the one sampled trial, in the band
    # with --band 0 the same small point is feasible and trained
    s0 = settings(tmp_path, space, budget_flops=2_500_000, baselines=False, trials=1, band=0.0,
                  study_name="t0")
    study0 = study_mod.open_study(s0)
    study0.enqueue_trial(small)
    study0 = run_trials(s0, show_progress=False)
    assert study0.get_trials()[0].user_attrs["trained"]


def load_config_from(attrs):
    from ghostsearch import NetConfig

    return NetConfig.from_dict(attrs["config"])


def test_baselines_are_in_the_study(tmp_path, space):
    s = settings(tmp_path, space)
    names = [n for n, _ in baseline_widths(space, Limits.of(s))]
    assert names[:2] == ["GhostNet 0.5x", "GhostNet 1.0x"]
    assert "widest within budget" in names[-1]
    study = run_trials(s, show_progress=False)
    marked = {t.user_attrs.get("baseline") for t in study.get_trials()} - {None}
    assert marked == set(names)
    for t in study.get_trials():
        if t.user_attrs.get("baseline") == "GhostNet 1.0x":
            assert t.params == space.reference_params(1.0)


def test_resume_grows_the_study_and_loses_nothing(tmp_path, space):
    first = run_trials(settings(tmp_path, space, trials=4), show_progress=False)
    before = {t.number: (t.params, t.user_attrs.get("val_acc")) for t in first.get_trials()}
    again = run_trials(settings(tmp_path, space, trials=4), show_progress=False)
    assert len(again.get_trials()) == len(before)  # already done: nothing runs
    more = run_trials(settings(tmp_path, space, trials=7), show_progress=False)
    assert trained_count(more) == 7
    after = {t.number: (t.params, t.user_attrs.get("val_acc")) for t in more.get_trials()}
    assert all(after[n] == v for n, v in before.items())
    baselines = [t.user_attrs["baseline"] for t in more.get_trials()
                 if t.user_attrs.get("baseline")]
    assert len(baselines) == len(set(baselines))  # not enqueued twice


def test_resume_with_other_settings_is_refused(tmp_path, space):
    run_trials(settings(tmp_path, space, trials=3), show_progress=False)
    with pytest.raises(StudyError, match="created with other budget_flops.*new --study-name"):
        run_trials(settings(tmp_path, space, trials=3, budget_flops=10_000_000),
                   show_progress=False)


def test_pruning_never_discards_a_finished_training(tmp_path, space, monkeypatch):
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: True)
    study = run_trials(settings(tmp_path, space, trials=5), show_progress=False)  # 2 epochs
    searched = [t for t in study.get_trials() if t.user_attrs.get("decision") == "train"
                and not t.user_attrs.get("baseline")]
    assert searched and all(t.state == optuna.trial.TrialState.PRUNED for t in searched)
    assert {t.user_attrs["reason"].split(" (")[0] for t in searched} == {"pruned after epoch 1"}
    one_epoch = run_trials(settings(tmp_path, space, trials=5, study_name="one",
                                    protocol=Recipe(epochs=1, batch_size=32)),
                           show_progress=False)
    assert not [t for t in one_epoch.get_trials() if t.state == optuna.trial.TrialState.PRUNED]


def test_sampler_seeds_of_workers_differ():
    assert study_mod.sampler_seed(7, 0, 0) == 7  # a fresh one-process search: reproducible
    seeds = {study_mod.sampler_seed(7, w, started) for w in range(4) for started in (0, 3)}
    assert len(seeds) == 8
    # a second command joining a fresh study (another machine) is not the creator
    assert study_mod.sampler_seed(7, 0, 0, creator=False) != 7


def test_one_process_search_is_reproducible(tmp_path, space):
    runs = [run_trials(settings(tmp_path, space, trials=5, study_name=f"r{i}"),
                       show_progress=False) for i in range(2)]
    assert [t.params for t in runs[0].trials] == [t.params for t in runs[1].trials]


def test_budget_below_the_smallest_architecture(tmp_path, space):
    with pytest.raises(ConfigError, match=r"below the smallest architecture .* MFLOPs"):
        run_trials(settings(tmp_path, space, budget_flops=1000), show_progress=False)


def test_export_round_trip_equals_the_trained_model(tmp_path, space):
    study = run_trials(settings(tmp_path, space), show_progress=False)
    path = export_best(study, tmp_path / "out")
    best = best_feasible(study)
    data = json.loads(path.read_text())
    meta = data["metadata"]
    assert meta["trial"] == best.number and meta["val_acc"] == best.user_attrs["val_acc"]
    assert meta["budget_flops"] == 9_000_000 and meta["proxy_protocol"]["epochs"] == 2
    cfg = load_config(path)
    assert cfg.to_dict() == best.user_attrs["config"]
    model = build_model(cfg)
    assert count_flops(model) == meta["flops"] == best.user_attrs["flops"] <= 9_000_000
    assert sum(p.numel() for p in model.parameters()) == meta["params"]
    with pytest.raises(ConfigError, match="--trial 999"):
        export_trial(study, 999, tmp_path / "x.json")


def test_multi_objective_runs_without_pruning(tmp_path, space):
    s = settings(tmp_path, space, objectives=("accuracy", "flops"), sampler="nsga2", trials=4)
    study = run_trials(s, show_progress=False)
    assert len(study.directions) == 2
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(len(t.values) == 2 for t in done)
    assert all(t.values[1] == t.user_attrs["flops"] / 1e6 for t in done)


def test_same_seed_same_architectures_and_accuracies(tmp_path, space):
    a = run_trials(settings(tmp_path / "a", space, trials=5), show_progress=False)
    b = run_trials(settings(tmp_path / "b", space, trials=5), show_progress=False)
    key = [(t.params, t.user_attrs.get("val_acc")) for t in a.get_trials()]
    assert key == [(t.params, t.user_attrs.get("val_acc")) for t in b.get_trials()]


def test_report_tables(tmp_path, space):
    study = run_trials(settings(tmp_path, space), show_progress=False)
    df = trials_frame(study)
    assert len(df) == len(study.get_trials())
    assert {"trial", "state", "baseline", "s", "d", "k", "MFLOPs", "val_acc",
            "reason"} <= set(df.columns)
    assert (df[df.feasible == False].reason != "").all()  # noqa: E712
    assert df.s.iloc[0].count("/") == 5
    top = summary_table(study)
    assert top.val_acc.is_monotonic_decreasing


@pytest.mark.parametrize("kw, message", [
    ({"trials": 0}, "--trials 0"),
    ({"objectives": ("flops",)}, "start with accuracy"),
    ({"sampler": "grid"}, "--sampler 'grid'"),
    ({"storage": "redis://x"}, "unknown scheme"),
])
def test_bad_settings(tmp_path, space, kw, message):
    with pytest.raises(ConfigError, match=message):
        run_trials(settings(tmp_path, space, **kw), show_progress=False)


def test_latency_limit_is_hard_and_reported(tmp_path, space, trained_configs):
    from ghostsearch.latency.table import LatencyTable, network_ops
    from ghostsearch.report.render import write_report

    # a synthetic table: every op costs its MFLOPs in ms, so latency == MFLOPs
    table = LatencyTable("cpu: synthetic", "x", 1, space.deployment.resolution,
                         fits={"all": [0.0, 1.0, 0.0]})
    path = table.save(tmp_path / "lat.json")
    s = settings(tmp_path, space, budget_flops=None, latency_ms=5.0, latency_table=str(path),
                 objectives=("accuracy", "latency"), sampler="nsga2", trials=4)
    study = run_trials(s, show_progress=False)
    for t in study.get_trials():
        a = t.user_attrs
        cfg = load_config_from(a)
        assert a["latency_ms"] == pytest.approx(sum(op.flops for op in network_ops(cfg)) / 1e6)
        if a["latency_ms"] > 5.0 and not a.get("baseline"):
            assert "trained" not in a and "over latency limit" in a["reason"]
            assert t.constraints["latency"] > 0
    searched = [load_config_from(t.user_attrs) for t in study.get_trials()
                if t.user_attrs.get("trained") and not t.user_attrs.get("baseline")]
    assert searched and all(table.predict(c) <= 5.0 for c in searched)
    assert len(trained_configs) == trained_count(study)  # nothing else reached the trainer
    # the final Pareto set (and the baselines) measured where the table was built
    from ghostsearch.report.frame import MEASURED_KEY
    from ghostsearch.report.measure import front_trials, measure_front

    df = trials_frame(study)
    front = set(pareto_front(df, "latency_ms").trial)
    baselines = set(df[(df.baseline != "") & (df.state == "COMPLETE")].trial)
    assert front and set(front_trials(study)) == front | baselines
    measured = measure_front(study, table, limit_ms=5.0, runs=3)
    assert set(measured.trial) == front | baselines and (measured.measured_ms > 0).all()
    for _, row in measured.iterrows():
        assert row.predicted_ms == study.trials[row.trial].user_attrs["latency_ms"]
        assert row.error_pct == pytest.approx(
            100 * (row.predicted_ms - row.measured_ms) / row.measured_ms)
        assert row.within_limit == (row.measured_ms <= 5.0)
        assert row.device.startswith("cpu: ") and row["mode"] == "eager" and row.threads == 1
    assert set(study.user_attrs[MEASURED_KEY]) == {str(n) for n in measured.trial}
    df = trials_frame(study)
    assert df.measured_ms.notna().sum() == len(measured)
    assert df[~df.trial.isin(measured.trial)].measured_ms.isna().all()
    files = write_report([study], tmp_path / "rep")
    assert files["pareto_latency"].exists()
    assert "Measured latency of the final Pareto set" in files["md"].read_text()
    cuda_table = LatencyTable("cuda: some GPU", "x", None, space.deployment.resolution,
                              fits={"all": [0.0, 1.0, 0.0]})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="measured on CUDA and this machine has none"):
            measure_front(study, cuda_table)


def test_the_widest_reference_meets_the_latency_limit_and_confirm_takes_it(tmp_path, space):
    """With a latency limit, the reference to beat is the widest GhostNet that meets both
    limits, named as such even when it is 0.5x, and confirm compares with the one the study
    stored (before: the widest within the FLOPs budget alone, over the latency limit)."""
    from ghostsearch.confirm import candidates
    from ghostsearch.latency.table import LatencyTable
    from ghostsearch.search.study import REFERENCE_WIDTHS_KEY, open_study

    # latency == MFLOPs: references of 2.1, 4.3, 8.6 and 13.9 ms (0.3x, 0.5x, 0.75x, 1.0x)
    path = LatencyTable("cpu: synthetic", "x", 1, space.deployment.resolution,
                        fits={"all": [0.0, 1.0, 0.0]}).save(tmp_path / "lat.json")
    flops_only = settings(tmp_path, space)  # 9 MFLOPs
    assert baseline_widths(space, Limits.of(flops_only)) == [
        ("GhostNet 0.5x", 0.5), ("GhostNet 1.0x", 1.0),
        ("GhostNet 0.75x (widest within budget)", 0.75)]
    s = settings(tmp_path, space, latency_ms=6.0, latency_table=str(path))
    expected = [("GhostNet 0.5x (widest within budget)", 0.5), ("GhostNet 1.0x", 1.0)]
    assert baseline_widths(space, Limits.of(s)) == expected
    study = open_study(s)
    assert study.user_attrs[REFERENCE_WIDTHS_KEY] == [list(e) for e in expected]
    assert [t.user_attrs["baseline"] for t in study.get_trials()] == [n for n, _ in expected]
    cfg = space.build_config(space.reference_params(0.3))
    study.add_trial(optuna.trial.create_trial(
        params={}, distributions={}, value=50.0,
        user_attrs={"feasible": True, "val_acc": 50.0, "config": cfg.to_dict(), "flops": 1}))
    assert [c.key for c in candidates(study, 1)] == ["trial-2", "GhostNet 0.5x", "GhostNet 1.0x"]


def test_latency_settings_errors(tmp_path, space):
    with pytest.raises(ConfigError, match="need --latency-table"):
        settings(tmp_path, space, latency_ms=5.0)
    with pytest.raises(ConfigError, match="not a readable latency table"):
        settings(tmp_path, space, latency_ms=5.0, latency_table=str(tmp_path / "none.json"))


def test_the_library_leaves_optunas_log_level_alone(tmp_path, space):
    before = optuna.logging.get_verbosity()
    try:
        optuna.logging.set_verbosity(optuna.logging.DEBUG)
        run_trials(settings(tmp_path, space, trials=2, baselines=False), show_progress=False)
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)


def test_ctrl_c_records_the_trial_as_interrupted_and_logs_no_failure(tmp_path, space,
                                                                     monkeypatch, caplog):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(objective_mod, "train_proxy", interrupted)
    optuna.logging.enable_propagation()  # let caplog see Optuna's records
    try:
        with caplog.at_level("WARNING"), pytest.raises(KeyboardInterrupt):
            run_trials(settings(tmp_path, space, baselines=False), show_progress=False)
    finally:
        optuna.logging.disable_propagation()
    assert not [r for r in caplog.records if r.name.startswith("optuna")]
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'study.db'}")
    stopped = [t for t in study.get_trials() if t.user_attrs.get("decision") == "interrupted"]
    assert len(stopped) == 1 and stopped[0].user_attrs["reason"] == "interrupted"
    assert trained_count(study) == 0  # not counted: a resume trains another candidate


def test_a_failed_trial_keeps_no_frames_of_the_failed_training(tmp_path, space, monkeypatch):
    """The traceback of a failed training holds its tensors; the objective re-raises without
    it, so that the memory is free before the next candidate (and empty_cache can return it)."""
    def out_of_memory(*args, **kwargs):
        big = torch.ones(1000)  # noqa: F841 (a tensor in the failing frame)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(objective_mod, "train_proxy", out_of_memory)
    s = settings(tmp_path, space, trials=1, baselines=False)
    data = s.data.load(progress=False)
    objective = objective_mod.Objective(s, data, torch.device("cpu"))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(1))
    trial = study.ask()
    with pytest.raises(objective_mod.TrialFailed, match="OutOfMemoryError") as info:
        while True:  # ask until a candidate in the band reaches the trainer
            try:
                objective(trial)
            except optuna.TrialPruned:  # outside the band: recorded infeasible, not trained
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                trial = study.ask()
    assert info.value.__context__ is None and info.value.__cause__ is None
    frames = []
    tb = info.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "out_of_memory" not in frames and "_run" not in frames


def test_studies_on_different_validation_splits_are_not_merged(tmp_path, space):
    from ghostsearch.errors import StudyError
    from ghostsearch.report.render import write_report

    a = run_trials(settings(tmp_path, space, trials=1, baselines=False, study_name="a"),
                   show_progress=False)
    same = run_trials(settings(tmp_path, space, trials=1, baselines=False, study_name="b",
                               seed=5), show_progress=False)
    other = run_trials(settings(tmp_path, space, trials=1, baselines=False, study_name="c",
                                data=DataSpec("synthetic", val_size=40, train_subset=64,
                                              resolution=16, split_seed=1)),
                       show_progress=False)
    assert a.user_attrs["split"] == same.user_attrs["split"] != other.user_attrs["split"]
    write_report([a, same], tmp_path / "ab")  # another search seed, the same split
    with pytest.raises(StudyError, match="different validation splits"):
        write_report([a, other], tmp_path / "ac")
    assert not (tmp_path / "ac").exists()


def test_best_arch_carries_the_preprocessing(tmp_path, space):
    study = run_trials(settings(tmp_path, space, trials=2), show_progress=False)
    path = export_best(study, tmp_path / "out")
    meta = json.loads(path.read_text())["metadata"]
    pre = meta["preprocessing"]
    assert pre["input_size"] == [3, 16, 16] and pre["num_classes"] == 10
    assert len(pre["mean"]) == 3 and all(0 < m < 1 for m in pre["mean"])
    assert pre["interpolation"] == "bilinear" and pre["crop_pct"] == 1.0
    from ghostsearch.arch.config import read_preprocessing

    assert read_preprocessing(path) == pre


def test_a_spawned_worker_runs_on_its_own_gpu(tmp_path, space, monkeypatch):
    """No worker opens a context on cuda:0 unless it runs there: each sets its own device
    before it builds, captures or times anything."""
    import ghostsearch.search.workers as workers

    calls = []
    monkeypatch.setattr(workers, "pick_device", lambda name: torch.device(name))
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: calls.append(("set", str(dev))))
    monkeypatch.setattr(workers, "run_worker",
                        lambda *a, **k: calls.append(("run", k["device"])))
    workers._spawned_worker(settings(tmp_path, space, n_jobs=2), "cuda:1", None, 2,
                            optuna.logging.WARNING)
    assert calls == [("set", "cuda:1"), ("run", "cuda:1")]


def test_spawned_processes_are_all_awaited_and_a_failure_is_named():
    """Every process is waited for even when one fails, and the failure names how many of
    them exited non-zero with which codes (their own messages are already on stderr)."""
    import sys

    from ghostsearch.errors import WorkerError
    from ghostsearch.search.workers import spawn_and_wait

    polls = []
    spawn_and_wait(sys.exit, [(0,), (0,)], "workers", poll=lambda: polls.append(1), every=0.05)
    assert polls  # called while they ran
    with pytest.raises(WorkerError, match=r"^1 of 3 test workers exited with codes \[3\];"):
        spawn_and_wait(sys.exit, [(0,), (3,), (0,)], "test workers")

def test_prescreen_trains_only_the_best_of_a_scored_pool(tmp_path, space):
    from ghostsearch.report.render import write_report

    s = settings(tmp_path, space, prescreen="snip", pool=8, top=2, trials=2, baselines=False)
    study = run_trials(s, show_progress=False)
    pool = study.user_attrs["prescreen"]
    assert len(pool["pool"]) == 8 and pool["score"] == "snip"
    assert all(0.85 * s.budget_flops <= r["flops"] <= s.budget_flops for r in pool["pool"])
    assert pool["band"] == "[7.65, 9] MFLOPs" and pool["draws"]["kept"] == 8
    best = sorted(pool["pool"], key=lambda r: -r["score"])[:2]
    assert [r["picked"] for r in best] == [True, True]
    assert sum(r["picked"] for r in pool["pool"]) == 2
    trained = [t for t in study.get_trials() if t.user_attrs.get("decision") == "train"]
    assert sorted(map(repr, (t.params for t in trained))) == sorted(
        map(repr, (r["params"] for r in best)))
    files = write_report([study], tmp_path / "report")
    assert len((tmp_path / "report" / "pool.csv").read_text().splitlines()) == 1 + 8
    assert "Prescreen: 8 candidates within the limits scored with snip" in (
        files["md"].read_text())


def test_prescreen_on_two_cores_scores_what_one_process_scores(tmp_path, space):
    from ghostsearch.search.prescreen import build_pool

    one = settings(tmp_path, space, prescreen="naswot", pool=6, top=2, n_jobs=1)
    two = dataclasses.replace(one, n_jobs=2)
    data = one.data.load(progress=False)
    a, b = build_pool(one, data), build_pool(two, data)
    assert (a["workers"], b["workers"]) == (1, 2)
    assert [r["score"] for r in a["pool"]] == [r["score"] for r in b["pool"]]
    assert [r["picked"] for r in a["pool"]] == [r["picked"] for r in b["pool"]]
    assert b["cpu_seconds"] > 0  # the workers' CPU time, counted where it was spent


@pytest.mark.parametrize("kw, message", [
    ({"prescreen": "nope", "pool": 4, "top": 2}, "--prescreen 'nope': unknown score (known: "
                                                 "synflow"),
    ({"prescreen": "snip", "pool": 3, "top": 5}, "--top 5 is above --pool 3"),
    ({"prescreen": "snip", "pool": 0, "top": 0}, "both must be >= 1"),
    ({"prescreen": "snip", "pool": 50, "top": 2, "budget_flops": "smallest"},
     "--pool 50: the space holds fewer distinct candidates than that in"),
    ({"pruner": "asha"}, "--pruner 'asha': choose one of median, hyperband, sha, none"),
])
def test_prescreen_and_pruner_bad_input(tmp_path, space, kw, message):
    if kw.get("budget_flops") == "smallest":  # only the cheapest corner fits
        kw = {**kw, "budget_flops": smallest_flops(space)}
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings(tmp_path, space, **kw)


@pytest.mark.parametrize("name, kind", [("median", optuna.pruners.MedianPruner),
                                        ("hyperband", optuna.pruners.HyperbandPruner),
                                        ("sha", optuna.pruners.SuccessiveHalvingPruner),
                                        ("none", optuna.pruners.NopPruner)])
def test_pruners(tmp_path, space, name, kind):
    assert isinstance(study_mod.make_pruner(settings(tmp_path, space, pruner=name)), kind)
    multi = settings(tmp_path, space, pruner=name, objectives=("accuracy", "flops"))
    assert isinstance(study_mod.make_pruner(multi), optuna.pruners.NopPruner)


@pytest.mark.parametrize("argv, expected", [
    (["--preset", "gpu"], {"prescreen": None, "pool": 200, "top": 10, "pruner": "median"}),
    (["--preset", "cpu"], {"prescreen": None, "pool": 12, "top": 3, "pruner": "none"}),
    (["--preset", "cpu", "--prescreen", "none", "--pruner", "sha"],
     {"prescreen": None, "pool": 12, "top": 3, "pruner": "sha"}),
    (["--preset", "cpu", "--prescreen", "snip", "--pool", "50", "--top", "3", "--no-prune"],
     {"prescreen": "snip", "pool": 50, "top": 3, "pruner": "none"}),
    (["--preset", "quick", "--prescreen", "synflow"],
     {"prescreen": "synflow", "pool": 200, "top": 10, "pruner": "median"}),
])
def test_the_search_mode_is_the_presets_unless_a_flag_says_otherwise(argv, expected):
    from ghostsearch.cli.search import parse_args, search_mode
    from ghostsearch.search.presets import get_preset

    args = parse_args(argv)
    assert search_mode(args, get_preset(args.preset)) == expected


def test_an_unstarted_study_with_other_settings_is_replaced_a_started_one_never(tmp_path,
                                                                                space):
    from ghostsearch.search.study import open_study, replace_unstarted

    first = settings(tmp_path, space, trials=1)
    open_study(first)  # created, references enqueued, nothing trained
    other = dataclasses.replace(first, band=0.5)
    assert replace_unstarted(other) == ["band"]
    assert open_study(other).user_attrs["settings"]["band"] == 0.5
    run_trials(other, show_progress=False)  # one trained trial
    assert replace_unstarted(first) == []
    with pytest.raises(StudyError, match="created with other band"):
        open_study(first)


def test_a_study_holding_a_prescreen_pool_is_never_deleted_silently(tmp_path, space):
    from ghostsearch.search.prescreen import PRESCREEN_KEY
    from ghostsearch.search.study import open_study, replace_unstarted

    first = settings(tmp_path, space, trials=1)
    study = open_study(first)  # nothing trained, but a scored pool stored
    study.set_user_attr(PRESCREEN_KEY, {"pool": [{}, {}, {}], "cpu_seconds": 42.0})
    other = dataclasses.replace(first, band=0.5)
    with pytest.raises(StudyError, match=r"holds a prescreen pool \(3 candidates, 42 CPU-s\) "
                                         r"made with other band; rerun with those settings"):
        replace_unstarted(other)
    kept = optuna.load_study(study_name="t", storage=first.storage)
    assert kept.user_attrs[PRESCREEN_KEY]["cpu_seconds"] == 42.0


def test_auto_preset_follows_the_device():
    from ghostsearch.workflow.search import resolve_preset

    preset, why = resolve_preset("auto", "cpu")
    assert preset.name == "cpu" and why.startswith("auto: no CUDA device")
    assert resolve_preset("quick", "cpu")[0].name == "quick"


def test_a_search_whose_every_trial_fails_exits_2_in_one_line(tmp_path, monkeypatch, capsys):
    import ghostsearch.search.objective as objective
    from ghostsearch.cli import main

    def broken(*a, **k):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(objective, "train_proxy", broken)
    out = tmp_path / "out"
    code = main(["search", "--budget", "200MFLOPs", "--data", "synthetic", "--trials", "2",
                 "--epochs", "1", "--device", "cpu", "--preset", "quick", "--n-jobs", "1",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: every trial of study ")
    assert "RuntimeError: out of memory (simulated)" in err[-1]
    assert (out / "run.json").exists() and (out / "trials.csv").exists()  # nothing lost


def test_run_json_keeps_every_invocation(tmp_path):
    from ghostsearch.cli import main

    out = tmp_path / "out"
    args = ["search", "--budget", "200MFLOPs", "--data", "synthetic", "--trials", "1",
            "--epochs", "1", "--device", "cpu", "--preset", "quick", "--n-jobs", "1",
            "--no-baselines", "--out", str(out)]
    assert main(args) == 0
    assert main([*args[:-2], "--trials", "2", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert len(run["history"]) == 1 and run["history"][0]["args"]["trials"] == 1
    assert run["args"]["trials"] == 2


def test_run_search_is_the_command_as_a_call(tmp_path):
    """`ghostsearch.run_search(ghostsearch.search_settings(...))` trains, reports and exports
    as `ghostsearch search` does, names the study as the command would, and its best
    architecture rebuilds from best_arch.json with the FLOPs it was scored at."""
    import ghostsearch
    from ghostsearch.arch.counting import analytic_counts

    s = ghostsearch.search_settings(
        "200MFLOPs", data=DataSpec("synthetic", val_size=40, train_subset=64),
        preset="quick", recipe=Recipe(epochs=1, batch_size=32), trials=2, baselines=False,
        device="cpu", n_jobs=1, out=tmp_path / "out")
    assert s.study_name == "ghostnet-200M-synthetic-quick" and s.preset == "quick"
    assert s.out == str(tmp_path / "out") and s.data.train_cap == 1_000
    res = ghostsearch.run_search(s, record={"why": "a test"})
    assert not res.interrupted and len(res.table) == 2
    assert set(res.report) >= {"md", "html"} and res.report["md"].exists()
    assert res.best is not None and res.best["flops"] <= 200_000_000
    cfg = ghostsearch.load_config(res.best_path)
    assert analytic_counts(cfg).flops == res.best["flops"]
    run = json.loads((res.out / "run.json").read_text())
    assert run["args"] == {"why": "a test"} and run["history"] == []
    again = ghostsearch.run_search(s)  # resumes: nothing new to train
    assert len(again.table) == 2 and len(json.loads(
        (res.out / "run.json").read_text())["history"]) == 1


def test_search_settings_refuses_a_bad_option_in_one_line(tmp_path):
    import ghostsearch

    with pytest.raises(ConfigError, match=r"^--study-name 'a b': use letters"):
        ghostsearch.search_settings("200MFLOPs", study_name="a b", out=tmp_path)
    with pytest.raises(ConfigError, match="--latency-of needs --latency-table"):
        ghostsearch.search_settings("200MFLOPs", latency_of_width=1.0, out=tmp_path)


def test_a_band_no_architecture_falls_in_is_refused_before_anything_loads(tmp_path):
    """At 10 MFLOPs no architecture of the default space lies in [8.5, 10]: one line, at
    once, instead of a search whose every trial fails looking for one."""
    from ghostsearch.spaces.space import load_space

    ghostnet = load_space("ghostnet")
    with pytest.raises(ConfigError, match=r"^--budget 10M: no architecture of space 'ghostnet' "
                                          r"lies in \[8\.5, 10\] MFLOPs .*lower --band"):
        settings(tmp_path, ghostnet, budget_flops=10_000_000)
    settings(tmp_path, ghostnet, budget_flops=10_000_000, band=0.0)  # anything under it: fine
