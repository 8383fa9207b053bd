"""Export a model to ONNX, check it against PyTorch with onnxruntime, and time it on the CPU.

    ghostsearch deploy --config results/NAME/best_arch.json --onnx best.onnx
    ghostsearch deploy --model ghost-resnet56 --checkpoint runs/x/last.pt --onnx g56.onnx
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ghostsearch import ConfigError, build_model, load_config
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.compress.deploy import check_onnx, export_onnx, onnx_latency, require_deploy
from ghostsearch.compress.zoo import MODELS, make_model
from ghostsearch.report.export import read_preprocessing


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ghostsearch deploy", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="a NetConfig or exported best_arch.json")
    src.add_argument("--model", choices=sorted(MODELS),
                     help="a named network (ghost-* names are ghostified with s=2, d=3)")
    p.add_argument("--checkpoint",
                   help="weights: a `ghostsearch train` checkpoint or a state_dict file")
    p.add_argument("--onnx", required=True, help="where to write the .onnx file")
    p.add_argument("--resolution", type=int, default=None,
                   help="input size (default: the config's, or the model's usual)")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads for timing")
    p.add_argument("--runs", type=int, default=50, help="timed runs (batch 1)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    require_deploy()
    preprocessing = None
    if args.checkpoint and (Path(args.checkpoint).parent / "record.json").exists():
        preprocessing = read_preprocessing(Path(args.checkpoint).parent / "record.json")
    if args.config:
        preprocessing = preprocessing or read_preprocessing(args.config)
        cfg = load_config(args.config)
        if args.num_classes:
            import dataclasses

            cfg = dataclasses.replace(cfg, num_classes=args.num_classes)
        model, res = build_model(cfg), args.resolution or cfg.resolution
    else:
        model, res = make_model(args.model, args.num_classes or 10)
        res = args.resolution or res
    if args.checkpoint:
        try:
            state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as e:
            raise ConfigError(f"--checkpoint {args.checkpoint}: cannot read ({e})") from None
        state = state.get("model", state) if isinstance(state, dict) else state
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ConfigError(f"--checkpoint {args.checkpoint}: does not fit this model "
                              f"({str(e).splitlines()[0]})") from None
    path = export_onnx(model, args.onnx, res, preprocessing=preprocessing)
    diff = check_onnx(model, path, res)
    lat = onnx_latency(path, res, runs=args.runs, threads=args.threads)
    print(json.dumps({"onnx": str(path), "resolution": res, "max_abs_diff": diff,
                      "preprocessing": preprocessing, "onnxruntime_cpu_latency": lat},
                     indent=2))
    return 0 if diff < 1e-3 else 1

