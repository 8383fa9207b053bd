"""Export a model to ONNX, check it against PyTorch with onnxruntime, and time it on the CPU;
with --int8, also an int8 copy (static quantisation calibrated on training images); with
--data, the top-1 accuracy of each file on the test split, so the int8 drop is measured.

    ghostsearch deploy --config results/NAME/best_arch.json --onnx best.onnx
    ghostsearch deploy --config best_arch.json --checkpoint runs/x/last.pt --onnx best.onnx \\
        --int8 --data imagefolder --data-dir /path/to/cifar10
    ghostsearch deploy --model ghost-resnet56 --checkpoint runs/x/last.pt --onnx g56.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ghostsearch import ConfigError, NetConfig, build_model, load_config
from ghostsearch.arch.config import read_preprocessing
from ghostsearch.cli.common import ArgumentParser
from ghostsearch.compress.zoo import MODELS, make_model
from ghostsearch.deploy import (
    check_onnx,
    export_onnx,
    onnx_accuracy,
    onnx_latency,
    quantize_onnx,
    require_deploy,
)
from ghostsearch.train.data import Split, load_data


def trained_config(checkpoint: object) -> NetConfig | None:
    """The config a `ghostsearch train` checkpoint was trained with (its spec): the data's
    classes and input size and the small-input stem, which the searched deployment config
    (say 224 px, 1000 classes) does not have. None for a bare state_dict."""
    spec = checkpoint.get("spec") if isinstance(checkpoint, dict) else None
    if isinstance(spec, dict) and isinstance(spec.get("config"), dict):
        return NetConfig.from_dict(spec["config"])
    return None


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
    p.add_argument("--int8", action="store_true",
                   help="also write <onnx>-int8.onnx, quantised statically (QDQ, per-channel "
                        "int8 weights, uint8 activations), and time it")
    p.add_argument("--data", default=None,
                   help="cifar10, cifar100 or imagefolder: measure test accuracy of each file "
                        "and calibrate int8 on its training images")
    p.add_argument("--data-dir", default=None, help="where --data lies")
    p.add_argument("--calibration", type=int, default=256,
                   help="training images that calibrate the int8 ranges (default 256)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    require_deploy()
    preprocessing = None
    if args.checkpoint and (Path(args.checkpoint).parent / "record.json").exists():
        preprocessing = read_preprocessing(Path(args.checkpoint).parent / "record.json")
    state = None
    if args.checkpoint:
        try:
            state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as e:
            raise ConfigError(f"--checkpoint {args.checkpoint}: cannot read ({e})") from None
    if args.config:
        preprocessing = preprocessing or read_preprocessing(args.config)
        cfg = load_config(args.config)
        if args.num_classes:
            import dataclasses

            cfg = dataclasses.replace(cfg, num_classes=args.num_classes)
        trained = trained_config(state)
        if trained is not None and trained != cfg:
            print(f"note: deploying the config {args.checkpoint} was trained with "
                  f"({trained.resolution} px, {trained.num_classes} classes, stem stride "
                  f"{trained.stem_stride}), not {args.config}'s ({cfg.resolution} px, "
                  f"{cfg.num_classes} classes): the weights fit that model", file=sys.stderr)
            cfg = trained
        model, res = build_model(cfg), args.resolution or cfg.resolution
    else:
        model, res = make_model(args.model, args.num_classes or 10)
        res = args.resolution or res
    if state is not None:
        state = state.get("model", state) if isinstance(state, dict) else state
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ConfigError(f"--checkpoint {args.checkpoint}: does not fit this model "
                              f"({str(e).splitlines()[0]})") from None
    if args.int8 and args.data is None:
        raise ConfigError("--int8 calibrates on training images: add --data and --data-dir")
    if args.calibration < 1:
        raise ConfigError(f"--calibration {args.calibration}: must be at least 1")
    data = None
    if args.data is not None:
        if args.data == "synthetic":
            data = load_data("synthetic", resolution=res)
        else:
            data = load_data(args.data, args.data_dir, resolution=res)
        if data.resolution != res:
            raise ConfigError(f"--data {args.data}: images are {data.resolution}px, the model "
                              f"takes {res}px; pass --resolution {data.resolution} if it was "
                              "trained at that size")
    path = export_onnx(model, args.onnx, res, preprocessing=preprocessing)
    diff = check_onnx(model, path, res)
    result = {"onnx": str(path), "resolution": res, "max_abs_diff": diff,
              "preprocessing": preprocessing,
              "onnxruntime_cpu_latency": onnx_latency(path, res, runs=args.runs,
                                                      threads=args.threads)}
    if data is not None:
        pre = preprocessing or data.preprocessing()
        files = {"float32": path}
        if args.int8:
            calib = Split(data.train.images[:args.calibration],
                          data.train.labels[:args.calibration])
            q = quantize_onnx(path, path.with_name(path.stem + "-int8.onnx"), calib,
                              pre["mean"], pre["std"])
            files["int8"] = q
            result["int8"] = {"onnx": str(q), "calibration_images": len(calib),
                              "onnxruntime_cpu_latency": onnx_latency(
                                  q, res, runs=args.runs, threads=args.threads)}
        acc = {k: onnx_accuracy(f, data.test, pre["mean"], pre["std"], threads=args.threads)
               for k, f in files.items()}
        result["test_accuracy"] = {**acc, "images": len(data.test)}
        if "int8" in acc:
            result["test_accuracy"]["int8_drop_points"] = acc["float32"] - acc["int8"]
    print(json.dumps(result, indent=2))
    return 0 if diff < 1e-3 else 1
