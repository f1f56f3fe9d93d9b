"""`semirest train` and `semirest predict`: train a SemiREST model into a run folder, and apply it.

A run folder holds ``model.safetensors`` (config, EMA weights, bank, residual scale: see
:mod:`semirest.core.train.checkpoint`) and ``train.json`` (timings, loss curve, data used).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

CHECKPOINT_NAME = "model.safetensors"


def cmd_train(args: argparse.Namespace) -> int:
    from semirest.core.benchmark import machine_description, write_json
    from semirest.core.cli import CliError, TqdmProgress, config_from_args
    from semirest.core.data.datasets import load_mvtec_category
    from semirest.core.pipeline import load_images, pick_device
    from semirest.core.train.method import SemiREST

    cfg = config_from_args(args)
    try:
        device = pick_device(cfg.device)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    cat = load_mvtec_category(args.data, args.category)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = TqdmProgress(enabled=not args.quiet)
    print(f"[{args.category}] training SemiREST-{cfg.setting} ({cfg.preset} preset, {cfg.train.steps} steps) on {device}",
          file=sys.stderr)
    model = SemiREST(cfg, device, cat)
    if getattr(args, "checkpoint_every", 0):
        from semirest.core.train.periodic import PARTIAL_NAME, PeriodicCheckpoint

        progress = PeriodicCheckpoint(model, out / PARTIAL_NAME, args.checkpoint_every, progress)
    t0 = time.perf_counter()
    try:
        model.fit(load_images(cat.train), progress)
    finally:
        progress.close()
    fit_s = time.perf_counter() - t0
    path = model.save(out / CHECKPOINT_NAME)
    losses = model.trainer.losses if model.trainer else []
    write_json({
        "category": args.category, "setting": cfg.setting, "preset": cfg.preset, "device": str(device),
        "fit_s": round(fit_s, 2), "prepare_s": round(model.data.seconds, 2) if model.data else None,
        "steps": len(losses), "final_loss": (sum(losses[-50:]) / len(losses[-50:])) if losses else None,
        "loss_every_10": [round(x, 5) for x in losses[::10]],
        "labelled_images": [str(s.path) for s in model.labelled],
        "machine": machine_description(), "config": cfg.to_dict(),
    }, out / "train.json")
    print(f"trained in {fit_s:.1f} s; checkpoint {path}", file=sys.stderr)
    return 0


def _collect_images(items: list[str]) -> list[Path]:
    from semirest.core.data.images import is_image_file

    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q))
        elif p.is_file():
            paths.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such image or folder")
    return paths


def cmd_predict(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from semirest.core.cli import CliError, TqdmProgress
    from semirest.core.data.images import read_image, write_png
    from semirest.core.maps import overlay
    from semirest.core.pipeline import pick_device
    from semirest.core.train.checkpoint import CheckpointError
    from semirest.core.train.method import SemiREST

    run = Path(args.run)
    ckpt = run / CHECKPOINT_NAME if run.is_dir() else run
    try:
        device = pick_device(args.device or "auto")
        model = SemiREST.load(ckpt, device)
    except (CheckpointError, RuntimeError) as exc:
        raise CliError(str(exc)) from None
    paths = _collect_images(args.images)
    if not paths:
        raise CliError("no images given")
    out = Path(args.out)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    progress = TqdmProgress(enabled=not args.quiet)
    summary = []
    bs = model.extractor.cfg.batch_size
    try:
        for i in range(0, len(paths), bs):
            batch = paths[i:i + bs]
            images = [read_image(p) for p in batch]
            maps = model.predict(images)
            for p, im, m in zip(batch, images, maps):
                stem = p.stem if len(paths) == len({q.stem for q in paths}) else f"{i:04d}_{p.stem}"
                # probabilities in [0, 1]: a fixed colour scale makes overlays comparable across images
                write_png(out / "overlays" / f"{stem}.png", overlay(im, m, 0.0, 1.0, 0.5))
                if args.format == "npy":
                    np.save(out / "maps" / f"{stem}.npy", m.astype(np.float32))
                else:
                    cv2.imwrite(str(out / "maps" / f"{stem}.png"), np.round(np.clip(m, 0, 1) * 65535).astype(np.uint16))
                summary.append({"image": str(p), "score": float(m.max()), "stem": stem})
            progress_event(progress, min(i + bs, len(paths)), len(paths))
    finally:
        progress.close()
    (out / "scores.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {len(summary)} overlays and raw maps ({args.format}) to {out}", file=sys.stderr)
    return 0


def progress_event(progress, done: int, total: int) -> None:
    from semirest.core.pipeline import ProgressEvent

    progress(ProgressEvent("predict", done, total))


def register(sub) -> None:
    from semirest.core.cli import add_config_arguments

    p = sub.add_parser("train", help="train a SemiREST model on a category's normal images")
    p.add_argument("--data", required=True, help="dataset root (<root>/<category>/train/good ...)")
    p.add_argument("--category", required=True)
    p.add_argument("--out", required=True, help="run folder: model.safetensors and train.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="also write the model so far to RUN_DIR/last.safetensors every N steps (atomic)")
    add_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="anomaly maps of images with a trained SemiREST model")
    p.add_argument("--run", required=True, help="run folder of `semirest train` (or a .safetensors file)")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder: overlays/, maps/, scores.json")
    p.add_argument("--format", choices=["npy", "png16"], default="npy", help="raw map format (default npy)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_predict)
