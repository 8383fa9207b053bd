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
    """Tests read the library's lines as the command line shows them (on stdout)."""
    from ghostsearch import log

    log.to_stdout()
    yield
