"""`semirest benchmark` and `semirest demo`: fit and score methods on MVTec-layout categories."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from semirest.core.cli.common import TqdmProgress, add_config_arguments, config_from_args
from semirest.core.config import make_config
from semirest.core.data.datasets import list_categories, load_mvtec_category
from semirest.core.data.demo import make_demo_dataset
from semirest.core.data.images import write_png
from semirest.core.files import safe_file_name, unique_names, write_atomic
from semirest.core.visual import overlay


# -- benchmark ------------------------------------------------------------------------------------
def cmd_benchmark(args: argparse.Namespace) -> int:
    from semirest.core.benchmark import format_table, run_benchmark, write_json  # PyTorch: loaded when the command runs, so `semirest project` starts without it

    cfg = config_from_args(args)
    categories = args.category or list_categories(args.data)
    results = []
    for cat in categories:
        for method in args.method:
            progress = TqdmProgress(enabled=not args.quiet)
            size = (f"x{cfg.features.input_scale:g} scale" if cfg.features.input_scale > 0
                    else f"{cfg.features.image_size}px")
            print(f"[{cat}] {method} ({cfg.preset} preset, {cfg.features.backbone} @ {size})", file=sys.stderr)
            try:
                result = run_benchmark(cfg, args.data, cat, method, progress)
            finally:
                progress.close()
            results.append(result)
            print(format_table([result]).splitlines()[-1], file=sys.stderr)
    print(format_table(results))
    if args.json:
        out = Path(args.json)
        if len(results) == 1:
            write_json(results[0], out)
        else:
            write_json({"results": results}, out)
        print(f"wrote {out}", file=sys.stderr)
    return 0


# -- demo -----------------------------------------------------------------------------------------
def heatmap_names(samples) -> dict[str, str]:
    """{image path: file stem} of the demo's heatmaps: ``<defect type>_<stem>``, unique (types
    ``a_b`` + stem ``c`` and ``a`` + ``b_c`` get a hash of the full path each)."""
    return unique_names([(str(s.path), safe_file_name(f"{s.defect_type}_{s.path.stem}")) for s in samples])


def cmd_demo(args: argparse.Namespace) -> int:
    from semirest.core.benchmark import evaluate_category, format_table, write_json  # PyTorch: loaded when the command runs, so `semirest project` starts without it

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="semirest-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    data_root = out / "data"
    make_demo_dataset(data_root, seed=args.seed)
    cat = load_mvtec_category(data_root, "demo")
    cfg = make_config("fast", "un", args.overrides)
    print(f"demo dataset: {len(cat.train)} normal training images, {len(cat.test)} test images in {data_root}", file=sys.stderr)
    progress = TqdmProgress()
    try:
        ev = evaluate_category(cfg, cat, "patchcore", progress)
    finally:
        progress.close()
    heat_dir = out / "heatmaps"
    heat_dir.mkdir(exist_ok=True)
    # one colour scale for all images, so maps are comparable: 1st to 99.9th percentile
    allv = np.concatenate([m.ravel() for m in ev.maps])
    vmin, vmax = float(np.percentile(allv, 1)), float(np.percentile(allv, 99.9))
    names = heatmap_names(ev.samples)
    for s, im, m, mask in zip(ev.samples, ev.images, ev.maps, ev.masks):
        panel = np.concatenate([im, overlay(im, m, vmin, vmax, 0.5), np.repeat(mask[:, :, None], 3, 2).astype(np.uint8) * 255], axis=1)
        write_png(heat_dir / f"{names[str(s.path)]}.png", panel)
    table = format_table([ev.result])

    write_atomic(out / "metrics.txt", table + "\n")
    write_json(ev.result, out / "metrics.json")
    print(table)
    print(f"\nheatmaps (image | overlay | ground truth): {heat_dir}\nmetrics: {out / 'metrics.txt'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("benchmark", help="fit and evaluate methods on MVTec-layout categories")
    p.add_argument("--data", required=True, help="dataset root (<root>/<category>/train/good ...)")
    p.add_argument("--category", action="append", help="category (repeatable; default: all under --data)")
    p.add_argument("--method", action="append", help="method (repeatable): patchcore, semirest")
    p.add_argument("--json", help="write the result(s) as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_arguments(p)
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("demo", help="build a small synthetic defect dataset and run the baseline on it")
    p.add_argument("--out", help="output folder (default: a new temporary folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_demo)
