"""The reference bank: runs keyed by model, protocol and data content, stored once, shared by
processes, and reused by a second confirmation on the same data."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp

import optuna
import pandas as pd
import pytest
from test_confirm import DATA, search

from ghostsearch.bank import COLUMNS, Bank, data_fingerprint, legacy_key
from ghostsearch.cli import main
from ghostsearch.errors import ConfigError
from ghostsearch.train.data import Split, load_data
from ghostsearch.train.recipe import Recipe


def test_runs_round_trip_and_the_first_run_of_a_seed_stays(tmp_path):
    bank = Bank(tmp_path / "b.csv")
    assert bank.runs("k") == {} and bank.rows() == []
    assert bank.add("k", "GhostNet 1.0x", 0, 61.5, 60.25, 12.34, "test", threads=1)
    assert bank.add("k", "GhostNet 1.0x", 1, 62.0, 61.0, 10.0, "test", threads=1)
    assert not bank.add("k", "GhostNet 1.0x", 0, 99.0, 99.0, 1.0, "other")
    assert bank.add("j", "GhostNet 0.5x", 0, 50.0, 49.0, 5.0, "test")
    runs = bank.runs("k")
    assert sorted(runs) == [0, 1]
    assert (runs[0]["val_acc"], runs[0]["test_acc"], runs[0]["train_seconds"]) == (
        61.5, 60.25, 12.3)
    assert runs[0]["source"] == "test" and runs[0]["threads"] == "1"
    lines = (tmp_path / "b.csv").read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 4


def _add_many(path: str, worker: int, n: int) -> None:
    bank = Bank(path)
    for seed in range(n):
        bank.add(f"w{worker}", "GhostNet 1.0x", seed, 60.0, 59.0, 1.0, "test")
        bank.add("shared", "GhostNet 1.0x", seed, float(worker), 59.0, 1.0, "test")


def test_processes_appending_at_once_store_each_run_once(tmp_path):
    path = str(tmp_path / "b.csv")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(path, w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 15 + 15  # every worker's own runs, and each shared seed once
    shared = [(r["seed"]) for r in rows if r["key"] == "shared"]
    assert sorted(shared, key=int) == [str(s) for s in range(15)]
    assert open(path).read().count("key,name,seed") == 1


def test_a_file_that_is_not_a_bank_is_refused_in_one_line(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match=r"^reference bank .*b\.csv: not a bank file"):
        Bank(path).runs("k")


def test_the_data_fingerprint_follows_the_pixels_not_the_load():
    kw = dict(resolution=16, train_subset=64, val_size=32, progress=False)
    a, b = load_data("synthetic", **kw), load_data("synthetic", **kw)
    assert data_fingerprint(a) == data_fingerprint(b)
    other_split = load_data("synthetic", **kw, seed=1)
    assert data_fingerprint(other_split) != data_fingerprint(a)
    images = a.test.images.clone()
    images[0, 0, 0, 0] ^= 1  # one test pixel off by one level
    changed = a.__class__(**{**a.__dict__, "test": Split(images, a.test.labels)})
    assert data_fingerprint(changed) != data_fingerprint(a)


def test_the_legacy_key_follows_model_protocol_and_data():
    spec, proto = {"config": {"w": 1}, "name": None, "num_classes": 10}, Recipe()
    key = legacy_key(spec, proto, "d")
    assert key == legacy_key(dict(spec), Recipe(), "d")
    assert key != legacy_key({**spec, "num_classes": 100}, proto, "d")
    assert key != legacy_key(spec, Recipe(label_smoothing=0.0), "d")
    assert key != legacy_key(spec, proto, "e")


def test_the_run_spec_key_follows_everything_that_determines_a_run_but_the_seed():
    from ghostsearch.train.runspec import RunSpec, code_hash

    model = {"config": {"w": 1}, "name": None, "num_classes": 10}
    base = RunSpec(model=model, recipe=Recipe().identity(), data="d", device="cuda:1", seed=0)
    assert base.device == "cuda" and base.code == code_hash() and len(base.code) == 16
    assert RunSpec.from_dict(base.to_dict()) == base  # JSON round trip
    same = RunSpec(model=dict(model), recipe=Recipe().identity(), data="d", device="cuda",
                   seed=7)
    assert same.key() == base.key() and same.run_id() != base.run_id()
    for other in (dict(model=model | {"num_classes": 100}), dict(data="e"), dict(device="cpu"),
                  dict(recipe=Recipe(cutout=8).identity()), dict(code="0" * 16)):
        fields = {**base.__dict__, **other}
        assert RunSpec(**fields).key() != base.key(), other
    with pytest.raises(ConfigError, match="run spec of format 'x'"):
        RunSpec.from_dict({**base.to_dict(), "format": "x"})


def test_a_unit_records_its_run_spec_and_its_key_is_the_banks(tmp_path):
    """train_full writes the RunSpec into record.json; its key is what model_key gives the
    bank for that architecture, recipe, data and device."""
    from ghostsearch import reference_config
    from ghostsearch.bank import model_key, model_spec
    from ghostsearch.train import ModelSpec, train_full

    data = load_data("synthetic", None, val_size=20, train_subset=40, resolution=16)
    recipe = Recipe(epochs=1, batch_size=20)
    cfg = reference_config(0.5)
    spec = ModelSpec(**model_spec(cfg, data, recipe))
    record = train_full(spec, data, recipe, tmp_path / "run", seed=3)
    saved = json.loads((tmp_path / "run" / "record.json").read_text())
    assert saved["run_spec"]["seed"] == 3 and saved["run_spec"]["device"] == "cpu"
    assert record["run_key"] == saved["run_key"] == model_key(cfg, data, recipe,
                                                               data_fingerprint(data), "cpu")


def test_runs_stored_under_the_old_keys_are_named_and_never_reused(tmp_path):
    from ghostsearch import reference_config
    from ghostsearch.bank import model_legacy_key
    from ghostsearch.confirm import BankLink, Candidate

    data = load_data("synthetic", None, val_size=20, train_subset=40, resolution=16)
    cfg = reference_config(1.0)
    bank = Bank(tmp_path / "bank.csv")
    old = model_legacy_key(cfg, data, Recipe(), data_fingerprint(data))
    bank.add(old, "GhostNet 1.0x", 0, 60.0, 59.0, 10.0, "an old confirmation")
    ref = Candidate("GhostNet 1.0x", cfg.to_dict(), 141_150_512, baseline=True)
    link = BankLink.make(bank, [ref], data, Recipe(), data_fingerprint(data), "test")
    assert link.legacy_runs() == 1
    assert link.stored("GhostNet 1.0x", 0) is None  # not reused: trained again
    assert link.keys["GhostNet 1.0x"] != old


def test_a_second_confirmation_takes_the_references_from_the_bank(tmp_path, capsys,
                                                                 stub_trainer):
    """Two searches on the same data and protocol: the first confirmation stores its reference
    runs, the second trains only its candidates and reports the same reference figures."""
    _, url = search(tmp_path, name="a")
    _, _ = search(tmp_path, name="b")
    common = ["--storage", url, "--top", "1", "--seeds", "2", "--n-jobs", "1", *DATA]
    assert main(["confirm", "--study-name", "a", "--out", str(tmp_path / "a"), *common]) == 0
    bank = Bank(tmp_path / "reference_bank.csv")
    stored = pd.DataFrame(bank.rows())
    assert sorted(stored["seed"]) == [0, 0, 1, 1] or len(stored) == 2  # one or two references
    assert set(stored["source"]) == {"confirm a"}
    first = pd.read_csv(tmp_path / "a" / "confirmed.csv").set_index("key")
    capsys.readouterr()
    assert main(["confirm", "--study-name", "b", "--out", str(tmp_path / "b"), *common]) == 0
    printed = capsys.readouterr().out
    trials = optuna.load_study(study_name="b-confirm", storage=url).get_trials()
    banked = [t for t in trials if t.user_attrs.get("from_bank")]
    assert len(banked) == len(stored)  # every reference run came from the bank
    trained = [t for t in trials if not t.user_attrs.get("from_bank")]
    assert {t.user_attrs["key"] for t in trained} == {k for k in pd.read_csv(
        tmp_path / "b" / "confirmed.csv")["key"] if k.startswith("trial-")}
    assert f"{len(banked)} reference unit(s) taken from it, not trained" in printed
    second = pd.read_csv(tmp_path / "b" / "confirmed.csv").set_index("key")
    for ref in (k for k in first.index if first.loc[k, "baseline"]):
        assert second.loc[ref, "test_mean"] == first.loc[ref, "test_mean"]
    assert len(bank.rows()) == len(stored)  # nothing stored twice
    assert len(stub_trainer) == len(stored) + 2 + len(trained)  # a: refs + candidate; b


def test_no_bank_trains_the_references_and_leaves_no_file(tmp_path, stub_trainer):
    _, url = search(tmp_path, name="a")
    assert main(["confirm", "--study-name", "a", "--out", str(tmp_path / "a"), "--storage",
                 url, "--top", "1", "--seeds", "1", "--n-jobs", "1", "--no-bank", *DATA]) == 0
    assert not (tmp_path / "reference_bank.csv").exists()
    trials = optuna.load_study(study_name="a-confirm", storage=url).get_trials()
    assert trials and not any(t.user_attrs.get("from_bank") for t in trials)
    assert len(stub_trainer) == len(trials)  # every unit trained here, the references too


def test_the_ground_truth_and_confirm_key_a_reference_alike(tmp_path):
    """A reference in a ground-truth table and the same reference in a confirmation get one
    bank key when protocol and data agree, so each reuses the other's runs."""
    from ghostsearch import analytic_counts
    from ghostsearch.bench.ground_truth import BankUse, Unit, plan, write_plan
    from ghostsearch.confirm import BankLink, Candidate
    from ghostsearch.spaces.space import load_space

    space = load_space("ghostnet")
    archs = plan(space, 200_000_000, 1, [1.0, 1.2], second_seed=0)
    write_plan(tmp_path, space, archs, [Unit(a["arch_id"], 0) for a in archs], {})
    data = load_data("synthetic", train_subset=64, val_size=32, progress=False)
    proto = Recipe(epochs=12, batch_size=128)
    bank = Bank(tmp_path / "b.csv")
    table = BankUse.make(bank, tmp_path, ["ref-1.00x", "ref-1.20x", "s000"], proto, data)
    assert sorted(table.keys) == ["ref-1.00x", "ref-1.20x"]  # sampled ones are not banked
    cands = [Candidate(name, cfg.to_dict(), analytic_counts(cfg).flops, True)
             for name, cfg in (("GhostNet 1.0x", space.build_config(space.reference_params(1.0))),
                               ("GhostNet 1.2x", space.build_config(space.reference_params(1.2))))]
    link = BankLink.make(bank, cands, data, proto, data_fingerprint(data), "confirm x")
    assert link.keys["GhostNet 1.0x"] == table.keys["ref-1.00x"]
    assert link.keys["GhostNet 1.2x"] == table.keys["ref-1.20x"]
    assert len(set(link.keys.values())) == 2
    other = BankLink.make(bank, cands, data, Recipe(epochs=6, batch_size=128),
                          data_fingerprint(data), "confirm x")
    assert other.keys["GhostNet 1.0x"] != link.keys["GhostNet 1.0x"]


@pytest.mark.slow
def test_a_second_ground_truth_takes_its_references_from_the_bank(tmp_path, monkeypatch):
    from ghostsearch.bench.build_ground_truth import main as build

    monkeypatch.setenv("GHOSTSEARCH_CACHE", str(tmp_path / "cache"))
    args = ["--data", "synthetic", "--data-dir", str(tmp_path), "--budget", "100MFLOPs",
            "--archs", "1", "--second-seed", "0", "--epochs", "1", "--train-subset", "64",
            "--val-size", "32", "--workers", "1"]
    assert build([*args, "--out", str(tmp_path / "a")]) == 0
    bank = Bank(tmp_path / "reference_bank.csv")
    first = pd.read_csv(tmp_path / "a" / "runs.csv")
    refs = first[first["kind"] == "reference"]
    assert len(bank.rows()) == len(refs) > 0
    assert {r["source"] for r in bank.rows()} == {"ground truth"}
    assert build([*args, "--out", str(tmp_path / "b")]) == 0
    second = pd.read_csv(tmp_path / "b" / "runs.csv").set_index("arch_id")
    for r in refs.itertuples():
        again = second.loc[r.arch_id]
        assert (again.val_acc, again.test_acc, again.val_curve) == (
            r.val_acc, r.test_acc, r.val_curve)
        assert again.total_seconds == 0.0  # written from the bank, not trained
    assert (second[second["kind"] == "sampled"]["total_seconds"] > 0).all()
    assert len(bank.rows()) == len(refs)


def test_every_unit_checkpoints_in_a_folder_named_by_its_run(tmp_path):
    """One convention (runspec.unit_folder): label, seed and RunSpec key; another seed, data
    or code is another folder. confirm keeps resuming a unit in its folder of ghostsearch
    < 0.5 while that holds a checkpoint."""
    import dataclasses

    from ghostsearch.confirm import unit_checkpoint
    from ghostsearch.train.runspec import RunSpec, unit_folder

    run = RunSpec(model={"m": 1}, recipe={"epochs": 2}, data="d0", device="cpu", seed=3)
    folder = unit_folder(tmp_path, "GhostNet 0.8x", run)
    assert folder.parent == tmp_path and folder.name == f"GhostNet_0.8x-seed3-{run.key()[:12]}"
    assert unit_folder(tmp_path, "GhostNet 0.8x", dataclasses.replace(run)) == folder
    for change in ({"seed": 4}, {"data": "d1"}, {"code": "other"}, {"device": "cuda"}):
        assert unit_folder(tmp_path, "GhostNet 0.8x", dataclasses.replace(run, **change)) \
            != folder, change
    assert unit_checkpoint(tmp_path, "GhostNet 0.8x", run) == folder
    legacy = tmp_path / "GhostNet_0.8x-seed3"
    legacy.mkdir()
    assert unit_checkpoint(tmp_path, "GhostNet 0.8x", run) == folder  # no checkpoint there
    (legacy / "last.pt").write_bytes(b"")
    assert unit_checkpoint(tmp_path, "GhostNet 0.8x", run) == legacy
