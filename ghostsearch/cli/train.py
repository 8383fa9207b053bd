"""Train a found architecture or a named network for a full schedule, resumably.

    ghostsearch train --config results/NAME/best_arch.json --data imagefolder \\
        --data-dir /data/cifar10 --epochs 200
    ghostsearch train --model ghost-resnet56 --data cifar10 --data-dir ./cifar --epochs 200
    ghostsearch train --config ref.json --init ghostnet_100.pth ...   # timm checkpoint
    ghostsearch train --config best_arch.json --recipe full-data ...  # a named recipe
    ghostsearch train --config best_arch.json --recipe my_recipe.yaml ...  # your own

A found architecture is trained as the search's proxy saw it: the task's classes and image size,
and a stride-1 stem for images of 64 px or less. A checkpoint (`last.pt`) is written after every
epoch; running the same command again resumes from it. `record.json` holds the history, the
final validation and test accuracy and the time; `--onnx` also exports the trained model.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ghostsearch import load_config
from ghostsearch.cli.common import (
    ArgumentParser,
    add_data_args,
    add_recipe_arg,
    load_data_args,
    recipe_from_args,
)
from ghostsearch.compress.zoo import MODELS
from ghostsearch.deploy import check_onnx, export_onnx, require_deploy
from ghostsearch.search.proxy import proxy_config
from ghostsearch.train.full import ModelSpec, train_full
from ghostsearch.train.loop import pick_device
from ghostsearch.train.recipe import SCHEDULES, Recipe

# the recipe of a full training when no --recipe is given
DEFAULT_RECIPE = Recipe(name="train-default", epochs=200, batch_size=128, lr=0.4,
                        schedule="cosine", warmup=0.025, weight_decay=5e-4, label_smoothing=0.0)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ghostsearch train", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="a NetConfig or an exported best_arch.json")
    src.add_argument("--model", choices=sorted(MODELS),
                     help="a named network: vgg16, resnet56 (CIFAR), ghost-* (ghostified, s=2, "
                          "d=3), torchvision resnet18/resnet50/vgg16_bn")
    add_data_args(p, val_help="for monitoring")
    add_recipe_arg(p, "200 epochs, batch 128, SGD 0.1 cosine after a 2.5%% warm-up, crop and "
                      "flip")
    p.add_argument("--epochs", type=int, default=None, help="default 200")
    p.add_argument("--batch-size", type=int, default=None, help="default 128")
    p.add_argument("--lr", type=float, default=None,
                   help="peak SGD lr at batch 512, scaled with the batch (default 0.4: 0.1 at "
                        "batch 128)")
    p.add_argument("--schedule", choices=SCHEDULES, default=None, help="default cosine")
    p.add_argument("--warmup", type=float, default=None,
                   help="fraction of steps (default 0.025)")
    p.add_argument("--weight-decay", type=float, default=None, help="default 5e-4")
    p.add_argument("--label-smoothing", type=float, default=None, help="default 0")
    p.add_argument("--init", default=None, help="start from a timm-format state_dict file")
    p.add_argument("--out", default=None, help="run folder (default: runs/<model or config>)")
    p.add_argument("--onnx", default=None, help="also export the trained model to this file")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.onnx:  # refused now, not after the training
        require_deploy()
    recipe = recipe_from_args(args, DEFAULT_RECIPE)
    if recipe.train_images is not None and args.train_subset is None:
        args.train_subset = recipe.train_images
    data = load_data_args(args)
    if args.config:
        cfg = proxy_config(load_config(args.config), data, recipe)
        spec = ModelSpec(config=cfg.to_dict(), num_classes=data.num_classes)
        name = Path(args.config).stem
    else:
        spec = ModelSpec(name=args.model, num_classes=data.num_classes)
        name = args.model
    out = Path(args.out or Path("runs") / name)
    record = train_full(spec, data, recipe, out, seed=args.seed, device=pick_device(args.device),
                        init=args.init)
    print(f"test accuracy {record['test_acc']:.2f}% after {len(record['history'])} epochs, "
          f"{record['train_seconds']:.0f} s; record: {out / 'record.json'}")
    if args.onnx:
        model = spec.build()
        import torch

        model.load_state_dict(torch.load(out / "last.pt", map_location="cpu",
                                         weights_only=False)["model"])
        res = data.resolution
        path = export_onnx(model, args.onnx, res, preprocessing=record["preprocessing"])
        print(f"onnx: {path}, max |onnxruntime - torch| = {check_onnx(model, path, res):.2e}")
    return 0

