from __future__ import annotations

import random

import pytest

from ghostsearch import BlockConfig, NetConfig

REFERENCE_WIDTHS = {0.5: "ghostnet_050", 1.0: "ghostnet_100", 1.3: "ghostnet_130"}


def random_config(rng: random.Random) -> NetConfig:
    """A valid but arbitrary config: odd channel counts, every s/d/k, SE and strides mixed."""
    stages = []
    for _ in range(rng.randint(1, 5)):
        stage = []
        for j in range(rng.randint(1, 3)):
            stage.append(
                BlockConfig(
                    kernel=rng.choice([1, 3, 5, 7]),
                    expansion=rng.randint(1, 97),
                    out_channels=rng.randint(1, 61),
                    se_ratio=rng.choice([0.0, 0.0, 0.25, 0.5, 0.13]),
                    stride=rng.choice([1, 2]) if j == 0 else 1,
                    ghost_ratio=rng.randint(2, 5),
                    cheap_kernel=rng.choice([1, 3, 5, 7]),
                )
            )
        stages.append(tuple(stage))
    return NetConfig(
        stem_channels=rng.randint(1, 33),
        stages=tuple(stages),
        head_channels=rng.randint(1, 200),
        num_features=rng.randint(1, 300),
        num_classes=rng.randint(1, 120),
        resolution=rng.randint(9, 80),
        stem_stride=rng.choice([1, 2]),
        dropout=rng.choice([0.0, 0.2]),
    )


@pytest.fixture
def rng() -> random.Random:
    return random.Random(0)


@pytest.fixture(autouse=True)
def library_lines_on_stdout():
    """Tests read the library's lines as the command line shows them (on stdout), and start
    with bars off, the library's default (a command run in-process turns them on)."""
    from ghostsearch import log
    from ghostsearch.progress import show_progress

    log.to_stdout()
    show_progress(False)
    yield


@pytest.fixture
def stub_trainer(monkeypatch):
    """`train_full` replaced by a stand-in that trains nothing, for tests of the bookkeeping
    around units (queues, retries, the bank, verdicts), which then take milliseconds a unit.
    Its accuracies follow the model and the seed (a hash), and its record carries the real
    RunSpec key, so the bank keys it as it keys a trained run. Returns the (spec, seed) calls."""
    import dataclasses
    import hashlib
    import json

    from ghostsearch.train.data import content_fingerprint
    from ghostsearch.train.runspec import RunSpec, device_class

    calls = []

    def train(spec, data, recipe, out_dir, *, seed=0, device="cpu", log=print, on_step=None,
              **_):
        calls.append((spec, seed))
        text = json.dumps([dataclasses.asdict(spec), seed], sort_keys=True)
        val = 50.0 + int(hashlib.sha256(text.encode()).hexdigest()[:6], 16) % 1000 / 100
        run = RunSpec(model=dataclasses.asdict(spec), recipe=recipe.identity(),
                      data=content_fingerprint(data), device=device_class(device), seed=seed)
        log("epoch 1/1")
        return {"val_acc": val, "test_acc": val - 1.0, "train_seconds": 1.0,
                "history": [{"epoch": 1, "val_acc": val}], "run_key": run.key()}

    import importlib

    # each binds the name at import: all imported before any is patched, so that none
    # binds the stand-in as its original
    where = [importlib.import_module(m) for m in
             ("ghostsearch.train.full", "ghostsearch.confirm", "ghostsearch.bench.ground_truth")]
    for module in where:
        monkeypatch.setattr(module, "train_full", train)
    return calls
