from __future__ import annotations

import pytest
import torch

from ghostsearch import ConfigError, build_model, reference_config
from ghostsearch.latency.measure import measure_latency


def small():
    return reference_config(0.3, num_classes=10, resolution=32, stem_stride=1)


def test_cpu_measurement_records_its_conditions():
    before = torch.get_num_threads()
    lat = measure_latency(small(), runs=7, warmup=2, threads=1)
    assert 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms
    assert (lat.runs, lat.batch, lat.resolution, lat.threads) == (7, 1, 32, 1)
    assert lat.mode == "eager" and lat.dtype == "float32" and lat.device.startswith("cpu: ")
    assert lat.torch == torch.__version__
    assert torch.get_num_threads() == before  # the caller's setting is restored
    assert set(lat.to_dict()) >= {"median_ms", "p90_ms", "device", "torch", "batch"}


def test_measures_a_module_in_eval_mode_and_gives_it_back_as_it_was():
    model = build_model(small()).train()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    lat = measure_latency(model, batch=2, resolution=16, runs=3, warmup=1)
    assert (lat.batch, lat.resolution, lat.runs) == (2, 16, 3)
    assert 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms
    # timed in eval mode: a training-mode forward would have moved BatchNorm's statistics
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())
    assert model.training  # and handed back in the mode it came in


def test_refuses_what_it_cannot_measure():
    with pytest.raises(ConfigError, match="dtype='int8'"):
        measure_latency(small(), dtype="int8")
    with pytest.raises(ConfigError, match="CPU latency is measured in float32"):
        measure_latency(small(), dtype="float16")
    with pytest.raises(ConfigError, match="runs and batch must be >= 1"):
        measure_latency(small(), runs=0)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            measure_latency(small(), device="cuda")


@pytest.mark.gpu
def test_cuda_graph_measurement():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    lat = measure_latency(small(), device="cuda", runs=20, dtype="float16")
    assert lat.mode == "cuda-graph" and lat.device.startswith("cuda: ")
