"""`semirest train` and `semirest predict`: train a SemiREST model into a run folder, and apply it.

A run folder holds ``model.safetensors`` (config, EMA weights, bank, residual scale: see
:mod:`semirest.core.train.checkpoint`) and ``train.json`` (timings, loss curve, data used).

``semirest train`` also runs under ``torchrun --nproc_per_node N`` (one or several machines): see
:mod:`semirest.core.distributed` and the README section "Training on several GPUs or machines".
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from semirest.core import files
from semirest.core.cli.common import CliError, TqdmProgress, add_config_arguments, config_from_args
from semirest.core.cli.labelled_export import read_labelled_export
from semirest.core.data.datasets import load_images, load_mvtec_category
from semirest.core.data.images import is_image_file, read_image, write_png
from semirest.core.progress import ProgressEvent
from semirest.core.visual import overlay

CHECKPOINT_NAME = "model.safetensors"


def cmd_train(args: argparse.Namespace) -> int:
    """Train; under ``torchrun`` every rank runs this, and only rank 0 prints, shows progress and
    writes the run folder (:mod:`semirest.core.distributed`)."""
    from semirest.core import distributed  # PyTorch: loaded when the command runs, so `semirest project` starts without it

    if getattr(args, "false_alarm", None) is not None:
        if not 0.0 < args.false_alarm < 1.0:
            raise CliError(f"--false-alarm must be a share between 0 and 1 (0.01 = 1 %), got {args.false_alarm}")
        args.overrides = list(args.overrides) + [f"eval.false_alarm={args.false_alarm!r}"]
    cfg = config_from_args(args)
    try:
        ctx, device = distributed.init_from_env(cfg.device)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    try:
        return _train(args, cfg, ctx, device)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace, cfg, ctx, device) -> int:
    # PyTorch: loaded when the command runs, so `semirest project` starts without it
    from semirest.core.benchmark import machine_description, write_json
    from semirest.core.distributed import unwrap
    from semirest.core.methods.semirest import SemiREST

    cat = load_mvtec_category(args.data, args.category)
    out = Path(args.out)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    progress = TqdmProgress(enabled=not args.quiet and ctx.is_main)
    where = f"{device}" if ctx.backend is None else f"{device}, rank {ctx.rank} of {ctx.world_size} ({ctx.backend})"
    if ctx.is_main:
        print(f"[{args.category}] training SemiREST-{cfg.setting} ({cfg.preset} preset, {cfg.train.steps} steps) on {where}",
              file=sys.stderr)
    labelled = None
    if getattr(args, "labels", None):
        if cfg.setting == "un":
            raise CliError("--labels needs --setting sup (pixel / block masks) or semi (box masks)")
        try:
            labelled = read_labelled_export(args.labels)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if ctx.is_main:
            print(f"[{args.category}] {len(labelled)} labelled images from {args.labels}", file=sys.stderr)
    model = SemiREST(cfg, device, cat, labelled=labelled)
    if getattr(args, "checkpoint_every", 0):
        from semirest.core.cli.periodic import PARTIAL_NAME, PeriodicCheckpoint  # PyTorch: loaded when the command runs, so `semirest project` starts without it

        progress = PeriodicCheckpoint(model, out / PARTIAL_NAME, args.checkpoint_every, progress)
    t0 = time.perf_counter()
    try:
        model.fit(load_images(cat.train), progress)
    finally:
        progress.close()
    fit_s = time.perf_counter() - t0
    wrote = None
    if ctx.is_main:
        wrote = model.save(out / CHECKPOINT_NAME)
        losses = model.trainer.losses if model.trainer else []
        write_json({
            "category": args.category, "setting": cfg.setting, "preset": cfg.preset, "device": str(device),
            "world_size": ctx.world_size, "backend": ctx.backend,
            "fit_s": round(fit_s, 2), "prepare_s": round(model.data.seconds, 2) if model.data else None,
            "steps": len(losses), "final_loss": (sum(losses[-50:]) / len(losses[-50:])) if losses else None,
            "loss_every_10": [round(x, 5) for x in losses[::10]],
            "labelled_images": [str(s.path) for s in model.labelled],
            "calibration": json.loads(model.calibration.to_json()) if model.calibration else None,
            "machine": machine_description(), "config": cfg.to_dict(),
        }, out / "train.json")
        print(f"trained in {fit_s:.1f} s; checkpoint {wrote}", file=sys.stderr)
        cal = model.calibration
        if cal is not None:
            miss = f", miss rate {cal.miss_rate:.1%} on {cal.n_defect} labelled defective images" if cal.miss_rate is not None else ""
            print(f"calibrated on {cal.n_images} normal images ({cal.n_unseen} never trained on): threshold "
                  f"{cal.threshold:.4g} for {cal.false_alarm:.1%} false alarms{miss}", file=sys.stderr)
    if args.rank_weights:
        _dump_rank_weights(Path(args.rank_weights), ctx, unwrap(model.model), model.trainer, wrote is not None)
    return 0


def _dump_rank_weights(folder: Path, ctx, model, trainer, wrote_checkpoint: bool) -> None:
    """Debugging / tests: this rank's final EMA weights and what it did, one pair of files per rank."""
    from safetensors.torch import save  # PyTorch: loaded when the command runs, so `semirest project` starts without it

    folder.mkdir(parents=True, exist_ok=True)
    files.write_atomic(folder / f"rank{ctx.rank}.safetensors",
                       save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}))
    info = {"rank": ctx.rank, "world_size": ctx.world_size, "backend": ctx.backend,
            "wrote_checkpoint": wrote_checkpoint, "steps": len(trainer.losses) if trainer else 0,
            "local_batch": [trainer.cfg.train.b1, trainer.cfg.train.b2, trainer.cfg.train.b3] if trainer else None,
            "losses": trainer.losses if trainer else []}
    files.write_json(folder / f"rank{ctx.rank}.json", info)


def _collect_images(items: list[str]) -> list[Path]:
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
    # PyTorch: loaded when the command runs, so `semirest project` starts without it
    from semirest.core.device import pick_device
    from semirest.core.methods.semirest import SemiREST
    from semirest.core.train.checkpoint import CheckpointError

    run = Path(args.run)
    ckpt = run / CHECKPOINT_NAME if run.is_dir() else run
    try:
        device = pick_device(args.device or "auto")
        model = SemiREST.load(ckpt, device)
    except (CheckpointError, RuntimeError) as exc:
        raise CliError(str(exc)) from None
    paths = list(dict.fromkeys(_collect_images(args.images)))
    if not paths:
        raise CliError("no images given")
    # file stems, and for stems shared by several images (a/000.png, b/000.png) the stem plus a
    # hash of the full path: each image has its own outputs, whatever the batches
    names = files.unique_names([(str(p), files.safe_file_name(p.stem)) for p in paths])
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
                stem = names[str(p)]
                # probabilities in [0, 1]: a fixed colour scale makes overlays comparable across images
                write_png(out / "overlays" / f"{stem}.png", overlay(im, m, 0.0, 1.0, 0.5))
                if args.format == "npy":
                    buf = io.BytesIO()
                    np.save(buf, m.astype(np.float32))
                    files.write_atomic(out / "maps" / f"{stem}.npy", buf.getvalue())
                else:
                    ok, png = cv2.imencode(".png", np.round(np.clip(m, 0, 1) * 65535).astype(np.uint16))
                    if not ok:
                        raise CliError(f"{out / 'maps' / stem}.png: could not encode the map")
                    files.write_atomic(out / "maps" / f"{stem}.png", png.tobytes())
                summary.append({"image": str(p), "score": float(m.max()), "stem": stem})
            progress_event(progress, min(i + bs, len(paths)), len(paths))
    finally:
        progress.close()
    files.write_json(out / "scores.json", summary)
    print(f"wrote {len(summary)} overlays and raw maps ({args.format}) to {out}", file=sys.stderr)
    return 0


def progress_event(progress, done: int, total: int) -> None:
    progress(ProgressEvent("predict", done, total))


def register(sub) -> None:

    p = sub.add_parser("train", help="train a SemiREST model on a category's normal images")
    p.add_argument("--data", required=True, help="dataset root (<root>/<category>/train/good ...)")
    p.add_argument("--category", required=True)
    p.add_argument("--out", required=True, help="run folder: model.safetensors and train.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="also write the model so far to RUN_DIR/last.safetensors every N steps (atomic)")
    p.add_argument("--labels", metavar="EXPORT_DIR", default=None,
                   help="train sup / semi on labels exported by the studio: `semirest project export PROJECT "
                        "--format masks` (sup: pixel and block labels; semi: export the boxes only, each box "
                        "region becomes one rotated box again) instead of 10 images drawn from the test set")
    p.add_argument("--false-alarm", type=float, default=None, metavar="RATE",
                   help="calibrate the OK/NG threshold for this share of normal images called NG "
                        "(default 0.01, i.e. 1 %%; config eval.false_alarm)")
    p.add_argument("--rank-weights", metavar="DIR", default=None,
                   help="debugging: every process writes its final EMA weights to DIR/rank<R>.safetensors "
                        "(compare ranks under torchrun)")
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
