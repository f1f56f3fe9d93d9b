"""Run `semirest benchmark` on every category under ../shared/data and print a Markdown table.

    python tests/benchmarks/bench_methods.py --method patchcore [--set KEY=VALUE ...] [--out DIR]

Every dataset root below --data-root (folders whose sub-folders have train/good) is visited. The
JSON of each run is written to --out, the table goes to stdout for BENCHMARKS.md. Methods and
overrides are passed through to the same code the CLI runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from semirest.core.benchmark import run_benchmark, write_json
from semirest.core.cli.common import TqdmProgress
from semirest.core.config import make_config
from semirest.core.data.datasets import DatasetLayoutError, list_categories


def dataset_roots(data_root: Path) -> list[tuple[Path, str]]:
    found = []
    for root in sorted(p for p in data_root.iterdir() if p.is_dir()):
        try:
            found += [(root, c) for c in list_categories(root)]
        except DatasetLayoutError:
            continue
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--method", action="append", default=None)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--setting", default="un")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--label", default="", help="a name for this configuration in the table")
    args = ap.parse_args()
    methods = args.method or ["patchcore"]
    out = Path(args.out)
    rows = []
    for root, cat in dataset_roots(Path(args.data_root)):
        for method in methods:
            cfg = make_config(args.preset, args.setting, args.overrides)
            progress = TqdmProgress()
            try:
                r = run_benchmark(cfg, root, cat, method, progress)
            finally:
                progress.close()
            write_json(r, out / f"{cat}_{method}_{cfg.setting}{('_' + args.label) if args.label else ''}.json")
            rows.append(r)
            m = r["metrics"]
            print(json.dumps({"category": cat, "method": method, **m, **r["timing_s"]}), flush=True)
    print(f"\n| category | method | config | pixel AUROC | PRO | AP | image AUROC | fit (s) | predict (s/img) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        m = r["metrics"]
        label = args.label or f"{r['backbone']} @ {r['image_size']}"
        print(f"| {r['category']} | {r['method']}-{r['setting']} | {label} | {100 * m['pixel_auroc']:.1f} | {100 * m['pro']:.1f} | "
              f"{100 * m['ap']:.1f} | {100 * m['image_auroc']:.1f} | {r['timing_s']['fit']:.0f} | {r['timing_s']['predict_per_image']:.3f} |")
    if rows:
        mean = {k: sum(r["metrics"][k] for r in rows) / len(rows) for k in rows[0]["metrics"]}
        print(f"| **mean** | | | {100 * mean['pixel_auroc']:.1f} | {100 * mean['pro']:.1f} | {100 * mean['ap']:.1f} | {100 * mean['image_auroc']:.1f} | | |")


if __name__ == "__main__":
    main()
