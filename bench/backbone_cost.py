"""What a crop costs each crop-feature network to learn from and to read, side by side on one device.

The shipped bundle reads crops with MobileNetV3-small because its backbones are trained here, on
two CPU cores; the lecture's ResNet50 at 224 px is the lead for sharper features of small plumes
(README, "What we tried and did not ship"). This prints, for each network, the milliseconds a crop
costs in a training step (forward, backward, AdamW, as training.backbone trains: a linear smoke
logit on the features, batches of 64) and in inference, the medians of --repeats timed batches after
one warm-up, their ratios to the first network, and what the backbone stage of `train default`
would take at that speed: the training crops and epochs the shipped backbone's record holds.

    .venv/bin/python bench/backbone_cost.py [--net mobilenet_v3_small@112 --net resnet50@224 ...]
                                            [--device cpu] [--batch 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bundle import DEFAULT_BUNDLE  # noqa: E402
from pipeline.config import ExtractorConfig  # noqa: E402
from pipeline.models import build_backbone, resolve_device  # noqa: E402

DEFAULT_NETS = ["mobilenet_v3_small@112", "mobilenet_v3_small@64", "resnet50@224"]


def parse_net(text: str) -> ExtractorConfig:
    name, _, size = text.partition("@")
    try:
        return ExtractorConfig(backbone=name, input_size=int(size or 224))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--net wants NAME@PX, e.g. resnet50@224: {exc}") from None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def crop_costs(config: ExtractorConfig, device: torch.device, batch: int, repeats: int) -> dict:
    """Milliseconds a crop, training step and inference, medians over `repeats` batches."""
    torch.manual_seed(0)
    built = build_backbone(config, load_weights=False)
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = nn.Sequential(built.module, nn.Flatten(1), nn.Linear(built.dim, 1)).to(device).to(memory_format=layout)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    x = torch.randn(batch, 3, config.input_size, config.input_size, device=device).contiguous(memory_format=layout)
    y = torch.rand(batch, 1, device=device)
    train, infer = [], []
    for _ in range(repeats + 1):  # the first of each is a warm-up
        model.train()
        _sync(device)
        start = time.perf_counter()
        loss = loss_fn(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        _sync(device)
        train.append(time.perf_counter() - start)
        model.eval()
        with torch.inference_mode():
            start = time.perf_counter()
            model(x)
            _sync(device)
            infer.append(time.perf_counter() - start)
    return {"train_ms_per_crop": 1000 * statistics.median(train[1:]) / batch,
            "inference_ms_per_crop": 1000 * statistics.median(infer[1:]) / batch}


def shipped_backbone_work() -> dict | None:
    """Training crops and epochs of the shipped backbone, from its bundle's record."""
    path = DEFAULT_BUNDLE / "metadata.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8")).get("provenance", {}).get("extractor", {})
    crops, epochs = record.get("crops", {}).get("train"), record.get("epochs")
    return {"crops": crops, "epochs": epochs} if crops and epochs else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", action="append", type=parse_net, metavar="NAME@PX",
                        help=f"network and crop side; repeatable (default: {', '.join(DEFAULT_NETS)})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--batch", type=int, default=64, help="crops a batch (default 64, as training.backbone)")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches after the warm-up (default 3)")
    args = parser.parse_args(argv)
    if args.batch < 2 or args.repeats < 1:
        parser.error("--batch must be at least 2 and --repeats at least 1")
    device = resolve_device(args.device)
    nets = args.net or [parse_net(n) for n in DEFAULT_NETS]
    work = shipped_backbone_work()
    rows = []
    for config in nets:
        row = {"net": f"{config.backbone}@{config.input_size}", **crop_costs(config, device, args.batch, args.repeats)}
        if work:
            row["backbone_stage_hours"] = row["train_ms_per_crop"] * work["crops"] * work["epochs"] / 3.6e6
        rows.append(row)
    first = rows[0]
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"median of {args.repeats}" + (f"; backbone stage: {work['crops']} crops x {work['epochs']} epochs" if work else ""))
    print(f"{'network':<26} {'train ms/crop':>14} {'x first':>8} {'infer ms/crop':>14} {'x first':>8} {'stage h':>8}")
    for row in rows:
        stage = f"{row['backbone_stage_hours']:8.2f}" if "backbone_stage_hours" in row else f"{'-':>8}"
        print(f"{row['net']:<26} {row['train_ms_per_crop']:14.2f} {row['train_ms_per_crop'] / first['train_ms_per_crop']:8.1f} "
              f"{row['inference_ms_per_crop']:14.2f} {row['inference_ms_per_crop'] / first['inference_ms_per_crop']:8.1f} {stage}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
