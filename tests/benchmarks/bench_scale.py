"""Scale benchmark: a synthetic bank of >= 2 million patch features.

    python tests/benchmarks/bench_scale.py [--rows 2000000] [--dim 256] [--work /tmp/semirest-scale]

Prints one JSON object per phase and a Markdown summary. Every phase runs in its own Python
process so that its peak resident memory (VmHWM, /proc/self/status) is its own; "working set" is
the peak minus the resident size right after the imports (torch, faiss, numpy).

Data (stated, not real features): ``n_images`` x 32 x 32 patches of dimension ``--dim`` in a
float16 FeatureStore file: a Zipf-weighted mixture of 4096 cluster centres (so some patterns are
rare, the case a greedy coreset exists for), each point = centre + a shared 32-d low-rank
variation + small isotropic noise. Queries are fresh draws of the same distribution. d = 256 by
default so that the exact flat index of the whole 2 M-row bank (2 GB float32) fits next to other
jobs on the project's 24 GB machine; the fast preset's features are 1024-d (4x the bytes and
search work per row, same selection work since selection runs in 256 principal coordinates).

Phases:
  make      write the store (skipped when the file exists with the right size)
  stream    stream_coreset over all rows with the bank.* defaults (1 % kept), coverage radius
            estimated on a random 100 k-row sample (a lower bound of the true maximum), against a
            random selection of the same size on the same sample
  cmp_mem   in-memory select_coreset on the first --cmp-rows rows (all of them in RAM)
  cmp_stream  stream_coreset on the same rows with max_in_memory = --cmp-m (exact radii on them)
  index     exact IndexFlatL2 vs IndexIVFFlat (nlist 4 sqrt(N), our build_ivf) over all rows, both
            filled from the store chunk by chunk: build time, queries/s, recall@1 per nprobe
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GRID = 32 * 32


def mem_status() -> dict:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS")):
            k, v = line.split(":")
            out[k] = int(v.split()[0]) * 1024
    return out


def n_images(rows: int) -> int:
    return -(-rows // GRID)


def synth_rows(rng: np.random.Generator, m: int, dim: int, model: dict) -> np.ndarray:
    c = rng.choice(len(model["p"]), m, p=model["p"])
    z = rng.standard_normal((m, model["A"].shape[0])).astype(np.float32)
    x = model["centres"][c] + z @ model["A"] + 0.1 * rng.standard_normal((m, dim)).astype(np.float32)
    return x.astype(np.float32)


def make_model(dim: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    k = 4096
    p = 1.0 / np.arange(1, k + 1) ** 1.1
    return {"centres": (rng.standard_normal((k, dim)) * 2.0).astype(np.float32),
            "A": (rng.standard_normal((32, dim)) * 0.35).astype(np.float32), "p": p / p.sum()}


def open_store(args):
    from semirest.core.features.store import FeatureStore

    return FeatureStore.open(Path(args.work) / "features.f16", n_images(args.rows), (32, 32, args.dim), "float16")


def phase_make(args) -> dict:
    from semirest.core.features.store import FeatureStore

    path = Path(args.work) / "features.f16"
    n_img = n_images(args.rows)
    rows = n_img * GRID
    size = rows * args.dim * 2
    if path.exists() and path.stat().st_size == size:
        return {"phase": "make", "skipped": True, "rows": rows, "dim": args.dim, "bytes": size}
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = FeatureStore(path, n_img, (32, 32, args.dim), "float16")
    model = make_model(args.dim)
    step = 65536
    for j, i in enumerate(range(0, rows, step)):
        m = min(step, rows - i)
        store.append_rows(i, synth_rows(np.random.default_rng([1, j]), m, args.dim, model))
    store.close()
    return {"phase": "make", "rows": rows, "dim": args.dim, "bytes": size, "seconds": round(time.perf_counter() - t0, 1)}


def _radius_on(store_or_x, sel_rows: np.ndarray, sample: np.ndarray) -> float:
    import faiss

    from semirest.core.features.store import rows_of

    src = rows_of(store_or_x)
    index = faiss.IndexFlatL2(src.dim)
    index.add(src.take_rows(np.sort(sel_rows)))
    worst = 0.0
    for i in range(0, len(sample), 50000):
        d, _ = index.search(src.take_rows(sample[i:i + 50000]), 1)
        worst = max(worst, float(np.sqrt(max(d.max(), 0.0))))
    return worst


def phase_stream(args) -> dict:
    from semirest.core.config import BankConfig
    from semirest.core.memory.stream import memory_bound_bytes, stream_coreset

    store = open_store(args)
    cfg = BankConfig(coreset_ratio=0.01)
    n = store.n_rows
    k = int(round(n * cfg.coreset_ratio))
    base = mem_status()["VmRSS"]
    t0 = time.perf_counter()
    res = stream_coreset(store, k, cfg.max_in_memory, cfg.stream_chunk, cfg.projection_dim, 0, cfg.stream_stage1)
    seconds = time.perf_counter() - t0
    peak = mem_status()["VmHWM"]
    rng = np.random.default_rng(7)
    sample = np.sort(rng.choice(n, 100000, replace=False))
    r_sel = _radius_on(store, res.indices, sample)
    r_rnd = _radius_on(store, rng.choice(n, k, replace=False), sample)
    return {"phase": "stream", "rows": n, "dim": store.dim, "k": k, "max_in_memory": cfg.max_in_memory,
            "chunk": cfg.stream_chunk, "projection_dim": cfg.projection_dim, "seconds": round(seconds, 1),
            "peak_rss_gb": round(peak / 1e9, 3), "base_rss_gb": round(base / 1e9, 3),
            "working_set_gb": round((peak - base) / 1e9, 3),
            "stated_bound_gb": round(memory_bound_bytes(cfg.max_in_memory, cfg.stream_chunk, cfg.projection_dim, store.dim, k) / 1e9, 3),
            "all_rows_float32_gb": round(n * store.dim * 4 / 1e9, 2),
            "radius_bound_r1_plus_r2": round(res.radius, 3), "stage_radii": [round(r, 3) for r in res.stage_radii],
            "radius_on_100k_sample": round(r_sel, 3), "random_selection_radius_on_sample": round(r_rnd, 3)}


def phase_cmp(args, streaming: bool) -> dict:
    from semirest.core.config import BankConfig
    from semirest.core.memory.coreset import coverage_radius, select_coreset
    from semirest.core.memory.stream import stream_coreset

    store = open_store(args)
    n = args.cmp_rows
    cfg = BankConfig(coreset_ratio=0.01)
    k = int(round(n * cfg.coreset_ratio))
    base = mem_status()["VmRSS"]
    t0 = time.perf_counter()
    if streaming:
        # the store holds more rows; a view of the first n behaves like a store of n rows
        class Prefix:
            n_rows, dim = n, store.dim
            read_rows = staticmethod(store.read_rows)
            take_rows = staticmethod(store.take_rows)

        res = stream_coreset(Prefix(), k, args.cmp_m, cfg.stream_chunk, cfg.projection_dim, 0, cfg.stream_stage1)
    else:
        x = store.read_rows(0, n)
        res = select_coreset(x, cfg.coreset_ratio, cfg.projection_dim, 0, cfg.max_size, cfg.projection)
    seconds = time.perf_counter() - t0
    peak = mem_status()["VmHWM"]
    x = store.read_rows(0, n)
    radius = coverage_radius(x, res.indices)
    return {"phase": "cmp_stream" if streaming else "cmp_mem", "rows": n, "k": k,
            "max_in_memory": args.cmp_m if streaming else n, "seconds": round(seconds, 1),
            "peak_rss_gb": round(peak / 1e9, 3), "working_set_gb": round((peak - base) / 1e9, 3),
            "coverage_radius": round(radius, 3)}


def phase_index(args) -> dict:
    import faiss

    from semirest.core.memory.bank import build_ivf, ivf_nlist

    store = open_store(args)
    n, d = store.n_rows, store.dim
    q = synth_rows(np.random.default_rng(99), args.queries, d, make_model(d))
    base = mem_status()["VmRSS"]
    t0 = time.perf_counter()
    flat = faiss.IndexFlatL2(d)
    for i in range(0, n, 262144):
        flat.add(store.read_rows(i, min(n, i + 262144)))
    flat_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    d_exact, i_exact = flat.search(q, 1)
    flat_qps = len(q) / (time.perf_counter() - t0)
    flat_peak = mem_status()["VmHWM"]
    del flat
    nlist = ivf_nlist(n)
    t0 = time.perf_counter()
    ivf = build_ivf(store, nlist, seed=0)
    ivf_build = time.perf_counter() - t0
    rows = []
    for nprobe in args.nprobe:
        ivf.nprobe = nprobe
        t0 = time.perf_counter()
        d_apx, i_apx = ivf.search(q, 1)
        qps = len(q) / (time.perf_counter() - t0)
        rows.append({"nprobe": nprobe, "qps": round(qps, 1), "speedup_vs_flat": round(qps / flat_qps, 1),
                     "recall_at_1_same_index": round(float(np.mean(i_apx[:, 0] == i_exact[:, 0])), 4),
                     "recall_at_1_same_distance": round(float(np.mean(d_apx[:, 0] <= d_exact[:, 0] * (1 + 1e-5) + 1e-6)), 4),
                     # what a PatchCore score sees: the 1-NN distance, approximate vs exact
                     "mean_nn_distance_excess": round(float(np.mean(np.sqrt(np.maximum(d_apx[:, 0], 0))
                                                                    / np.sqrt(np.maximum(d_exact[:, 0], 1e-12)) - 1)), 5)})
    peak = mem_status()["VmHWM"]
    return {"phase": "index", "rows": n, "dim": d, "queries": len(q), "nlist": nlist,
            "flat_build_s": round(flat_build, 1), "flat_qps": round(flat_qps, 1),
            "ivf_build_s": round(ivf_build, 1), "ivf": rows, "flat_peak_rss_gb": round(flat_peak / 1e9, 3),
            "peak_rss_gb": round(peak / 1e9, 3), "base_rss_gb": round(base / 1e9, 3),
            "faiss": faiss.__version__, "faiss_gpu": hasattr(faiss, "StandardGpuResources")}


PHASES = {"make": phase_make, "stream": phase_stream, "cmp_mem": lambda a: phase_cmp(a, False),
          "cmp_stream": lambda a: phase_cmp(a, True), "index": phase_index}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--work", default="/tmp/semirest-scale")
    ap.add_argument("--cmp-rows", type=int, default=300_000, help="rows of the in-memory vs streaming comparison")
    ap.add_argument("--cmp-m", type=int, default=65536, help="max_in_memory of the streaming side of the comparison")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--nprobe", type=int, action="append", default=None)
    ap.add_argument("--phase", action="append", choices=list(PHASES), help="run only these phases (repeatable)")
    ap.add_argument("--json", help="write all phase results to this file")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.nprobe = args.nprobe or [8, 32, 64, 128]
    phases = args.phase or list(PHASES)
    if args._child:  # one phase, in this process
        print(json.dumps(PHASES[phases[0]](args)), flush=True)
        return 0
    results = []
    for ph in phases:
        cmd = [sys.executable, __file__, "--_child", "--phase", ph, "--rows", str(args.rows), "--dim", str(args.dim),
               "--work", args.work, "--cmp-rows", str(args.cmp_rows), "--cmp-m", str(args.cmp_m),
               "--queries", str(args.queries)] + [x for p in args.nprobe for x in ("--nprobe", str(p))]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return out.returncode
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["phase_wall_s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(r), flush=True)
        results.append(r)
    meta = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "cpus": os.cpu_count(),
            "load_avg": os.getloadavg()}
    print(json.dumps(meta))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
