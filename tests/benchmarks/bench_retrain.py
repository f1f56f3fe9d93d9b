"""Time from Start to the first training step of a project run, with a cold and with a warm
preparation cache (``<project>.sqlite.cache``), on a project of MVTec screw's normal train images
(320 by default). Prints figures; asserts nothing (run as a script):

    nice python tests/benchmarks/bench_retrain.py [--data ../shared/data/mvtec] [--images 320]

Target: the warm first step within 10 s (fast preset, CPU). One training step, no calibration and
no scoring: only the preparation is measured. The project and its cache go to a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    from semirest.core.project.formats import images_from_mvtec
    from semirest.core.project.preparation_cache import clear_project_cache, project_cache_size
    from semirest.core.project.run import runs_folder, train_project
    from semirest.core.project.store import ProjectStore

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mvtec"))
    ap.add_argument("--category", default="screw")
    ap.add_argument("--images", type=int, default=320)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    overrides = ["train.steps=1", "eval.calibration_images=-1"]
    with tempfile.TemporaryDirectory(prefix="bench-retrain-") as tmp:
        project = Path(tmp) / "p.sqlite"
        new = images_from_mvtec(args.data, args.category, split="train")[: args.images]
        with ProjectStore.create(project) as store:
            store.set_meta("source", f"mvtec {args.data} category {args.category} split train")
            store.add_images(new)
        clear_project_cache(project)
        rows = []
        for label in ("cold", "warm", "warm again"):
            t0 = time.perf_counter()
            run_id, res = train_project(project, "fast", args.device, overrides, score=False)
            total = time.perf_counter() - t0
            s = json.loads((runs_folder(project) / f"run{run_id:03d}" / "train.json").read_text())
            rows.append((label, s["first_step_s"], total, s["preparation"]))
            print(f"{label:>10}: first step after {s['first_step_s']:.1f} s (run {total:.1f} s in all); "
                  f"preparation {s['preparation']}; cache {project_cache_size(project) / 2**20:.0f} MB", flush=True)
        print(f"{len(new)} images of {args.category}, fast preset, {args.device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
