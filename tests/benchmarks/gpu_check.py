"""One prepared run that checks every CUDA path and measures the paper preset, inside a time budget.

    python tests/benchmarks/gpu_check.py --out DIR [--budget 540] [--only env,speed,dist,accuracy]
                                         [--data ../shared/data] [--backbone efficientnet_lite2]
                                         [--weights FILE] [--dry-run]

A GPU is lent to this project rarely and briefly (docs/gpu-check.md says how to run this there),
so everything is decided here, not at the keyboard. Stages, each written into DIR/results.json
(after every stage, so a run cut short still leaves its figures) and DIR/results.md:

  env       torch / CUDA / GPU versions and memory; the test subset marked ``cuda`` run with
            SEMIREST_TEST_DEVICE set to the device (a subprocess with its own timeout)
  speed     the paper's Table 6 on this device: PCR time (features + 1-NN residuals) and bagged
            Swin time per image at batch 1 (Swin in float32 and under bf16 autocast), the single
            Swin of the no-bagging ablation, and batched throughput of the whole prediction in
            images/s; for the paper preset and the fast preset. Weights do not change timings, so a
            backbone whose weights are not here (the paper's WRN-50) is timed with random ones.
  dist      `semirest train` under torchrun (NCCL on a GPU, gloo on the CPU) for a few steps, an
            all-reduce through the same process group, and faiss' GPU index when faiss has one
  accuracy  the paper preset's Swin and schedule on ``--backbone`` (efficientnet_lite2: embedded
            weights, the device is offline) un, then sup, then semi (fine-tuned from the un model) on
            screw, as many steps as the budget leaves (printed), every row scored on the same test
            images; then magnetic_tile if time remains

Budget: every stage has an estimated cost and is skipped, with a note, when it would pass the
budget; the accuracy stage sizes its step count from measured step and prediction times. Stages
run in the order env, speed, dist, accuracy, so the elastic one comes last.

``--dry-run``: every stage on the CPU at toy sizes (64-px images, a 2-block 32-wide Swin, a few
steps, 8 training images), gloo instead of NCCL; tests/e2e/test_gpu_check.py runs it so this
script cannot rot while no GPU is lent.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAGES = ("env", "speed", "dist", "accuracy")
# A-priori cost of each fixed-size stage in seconds (GPU run, dry run): what is compared with the
# budget left before the stage starts. The accuracy stage plans itself from measured times.
ESTIMATE_S = {"env": (150, 40), "speed": (110, 25), "dist": (70, 30), "accuracy": (120, 30)}
TESTS_TIMEOUT_S = (140, 90)  # the cuda test subset's own timeout (GPU run, dry run)
# Toy sizes of the dry run (the test suite's TINY configuration, on the paper preset).
DRY_OVERRIDES = [
    "features.backbone=\"efficientnet_lite0\"", "features.image_size=64", "features.d_f=64",
    "features.pretrain_dim=64", "features.batch_size=4",
    "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.window_size=4", "model.mlp_ratio=2.0",
    "model.mu=4", "model.step=2", "train.synthetic_pool=6", "train.normal_pool=6", "bank.coreset_ratio=0.25",
]
# Dry run: the cuda subset without the tests that train (the GPU run has them all).
DRY_TESTS_K = "swin or bagging or resmixmatch"
PAPER_STEPS = 8000
REAL_BUDGET_S = 540.0  # a 10-minute device call with a minute to spare for start-up and the results
DRY_BUDGET_S = 160.0
DRY_STEPS = 3
SEMI_SHARE = 3 / 8  # semi fine-tuning length relative to un (config.make_config)


# -- import this checkout's package ------------------------------------------------------------------
def ensure_importable() -> None:
    """Make ``semirest.core`` this checkout's ``core/`` (installed or not): on a bare machine the
    package is not installed, so a folder of links is put first on the path, for this process and
    its subprocesses (pytest, torchrun)."""
    try:
        import semirest.core as sc

        if REPO in Path(sc.__file__).resolve().parents:
            return
    except ImportError:
        pass
    root = Path(tempfile.mkdtemp(prefix="semirest-path-"))
    (root / "semirest").mkdir()
    for name in ("core", "app"):
        (root / "semirest" / name).symlink_to(REPO / name, target_is_directory=True)
    for mod in [m for m in sys.modules if m == "semirest" or m.startswith("semirest.")]:
        del sys.modules[mod]
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)


# -- budget and results -------------------------------------------------------------------------------
class Budget:
    """Wall-clock budget of the whole run, counted from its start."""

    def __init__(self, seconds: float):
        self.total = float(seconds)
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return self.total - self.elapsed()

    def allows(self, seconds: float) -> bool:
        return seconds <= self.left()

    def skip_note(self, what: str, seconds: float) -> str:
        return f"skipped: {what} is estimated at {seconds:.0f} s, {max(0.0, self.left()):.0f} s of the budget left"


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


class Run:
    """The run's options, device, budget and results, written after every stage."""

    def __init__(self, args: argparse.Namespace):
        import torch

        self.args = args
        self.dry = bool(args.dry_run)
        self.device = torch.device("cpu") if self.dry else torch.device(args.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("gpu_check: no CUDA device is visible to torch; use --dry-run on a CPU")
        self.budget = Budget(args.budget)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        self.results: dict = {"meta": {"dry_run": self.dry, "budget_s": args.budget, "device": str(self.device),
                                       "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                                       "argv": sys.argv[1:]},
                              "stages": {}}
        import semirest.core

        self.results["meta"]["package"] = str(Path(semirest.core.__file__).resolve().parent)
        bundle = REPO / ".gpu" / "bundle.json"  # what gpu_bundle.py packed for the device machine
        if bundle.is_file():
            self.results["meta"]["bundle"] = json.loads(bundle.read_text())

    def est(self, stage: str) -> float:
        return ESTIMATE_S[stage][1 if self.dry else 0]

    def overrides(self) -> list[str]:
        return list(DRY_OVERRIDES) if self.dry else []

    def save(self) -> None:
        from semirest.core import files

        self.results["meta"]["elapsed_s"] = round(self.budget.elapsed(), 1)
        self.out.mkdir(parents=True, exist_ok=True)
        files.write_json(self.out / "results.json", self.results)
        files.write_atomic(self.out / "results.md", markdown(self.results))


# -- data ---------------------------------------------------------------------------------------------
def default_data_root() -> Path:
    """The carried bundle's data on the GPU machine (docs/gpu-check.md), else ../shared/data."""
    bundle = REPO / ".gpu" / "data"
    return bundle if bundle.is_dir() else REPO.parent / "shared" / "data"


CATEGORIES = {"screw": ("mvtec", "screw"), "magnetic_tile": ("magnetic_tile", "magnetic_tile")}


def load_category(run: Run, name: str):
    """A real category from --data, at toy size in the dry run; the dry run falls back to the
    synthetic demo dataset when the real data is absent (CI). None when absent on a real run."""
    from semirest.core.data.datasets import load_mvtec_category

    folder, cat_name = CATEGORIES[name]
    root = Path(run.args.data) / folder
    if (root / cat_name / "train" / "good").is_dir():
        cat = load_mvtec_category(root, cat_name)
    elif run.dry:
        from semirest.core.data.demo import make_demo_dataset

        demo = run.work / "demo"
        if not (demo / "demo").is_dir():
            make_demo_dataset(demo, seed=0, n_train=8, n_test_good=3, n_per_defect=3, size=64)
        cat = load_mvtec_category(demo, "demo")
    else:
        return None
    if run.dry:  # 8 training images; 3 good and 3 of each defect type to test (10 of them labelled)
        by_type: dict[str, list] = {}
        for s in cat.test:
            by_type.setdefault(s.defect_type, []).append(s)
        cat = replace(cat, train=cat.train[:8], test=[s for t in sorted(by_type) for s in by_type[t][:3]])
    return cat


def random_weights_file(run: Run, backbone: str) -> str:
    """A state dict of random weights for a backbone (speed only: weights do not change timings)."""
    import timm
    from safetensors.torch import save_file

    from semirest.core.features.backbones import get_spec

    path = run.work / f"random-{backbone}.safetensors"
    if not path.exists():
        model = timm.create_model(get_spec(backbone).timm_name, pretrained=False)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def loadable(backbone: str, weights: str | None) -> bool:
    from semirest.core.features.backbones import BackboneError, FeatureBackbone

    try:
        FeatureBackbone(backbone, weights)
        return True
    except BackboneError:
        return False


# -- stage a: environment and the cuda tests ---------------------------------------------------------
def stage_env(run: Run) -> dict:
    import numpy as np
    import timm
    import torch

    out: dict = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                 "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                 "timm": timm.__version__, "numpy": np.__version__, "cpus": os.cpu_count(),
                 "cuda_available": torch.cuda.is_available()}
    try:
        import faiss

        out["faiss"] = faiss.__version__
        out["faiss_gpu"] = hasattr(faiss, "StandardGpuResources")
    except ImportError as exc:
        out["faiss"] = f"not importable ({exc})"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_count=torch.cuda.device_count(), gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   capability=f"{p.major}.{p.minor}", multiprocessors=p.multi_processor_count,
                   bf16_supported=torch.cuda.is_bf16_supported())
    timeout = TESTS_TIMEOUT_S[1 if run.dry else 0]
    if not run.budget.allows(timeout):
        timeout = max(10.0, run.budget.left() - 5)
    out["tests"] = run_cuda_tests(run, timeout)
    return out


def run_cuda_tests(run: Run, timeout: float) -> dict:
    """`pytest -m cuda` with SEMIREST_TEST_DEVICE set to this run's device; the log goes to tests.log."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-rfE", "-p", "no:cacheprovider", "tests/unit"]
    if run.dry:
        cmd += ["-k", DRY_TESTS_K]
    env = dict(os.environ, SEMIREST_TEST_DEVICE=str(run.device), QT_QPA_PLATFORM="offscreen")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        text, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        text, rc = text + f"\n[gpu_check] timed out after {timeout:.0f} s\n", None
    from semirest.core import files

    files.write_atomic(run.out / "tests.log", text)
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected)", text)}
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, flags=re.M)
    return {"command": " ".join(cmd[1:]), "device": str(run.device), "returncode": rc,
            "seconds": round(time.perf_counter() - t0, 1), "counts": counts, "failed": failed,
            "timeout_s": round(timeout), "log": "tests.log"}


# -- stage b: speed (paper Table 6) -------------------------------------------------------------------
def speed_config(run: Run, preset: str):
    from semirest.core.config import make_config

    cfg = make_config(preset, "un", run.overrides())
    cfg.device = str(run.device)
    if run.args.weights and run.args.backbone == cfg.features.backbone:
        cfg.features.weights = run.args.weights
    note = None
    if not loadable(cfg.features.backbone, cfg.features.weights):
        cfg.features.weights = random_weights_file(run, cfg.features.backbone)
        note = f"{cfg.features.backbone} with random weights (no weight file here; timings only)"
    return cfg, note


def stage_speed(run: Run) -> dict:
    cat = load_category(run, "screw")
    if cat is None:
        return {"skipped": f"no screw data under {run.args.data} (images to time)"}
    out = {}
    for preset in ("paper", "fast"):
        est = run.est("speed") / 2
        if not run.budget.allows(est):
            out[preset] = {"skipped": run.budget.skip_note(f"speed of the {preset} preset", est)}
            continue
        log(f"speed: {preset} preset")
        out[preset] = speed_of(run, preset, cat)
        run.results["stages"]["speed"] = out
        run.save()
    return out


def speed_of(run: Run, preset: str, cat) -> dict:
    """Per-image times at batch 1 and batched throughput, using the prediction path of
    semirest.core.train.trainer (predict_token_maps, split into its two halves for the timers)."""
    import numpy as np
    import torch

    from semirest.core.memory.bank import MemoryBank
    from semirest.core.memory.bank import BankSearcher
    from semirest.core.model.bagging import predict_bagged, predict_whole, window_origins
    from semirest.core.model.swin import count_parameters
    from semirest.core.data.datasets import load_images
    from semirest.core.features.extractor import FeatureExtractor
    from semirest.core.memory.fit import bank_index_options
    from semirest.core.device import autocast
    from semirest.core.maps import predict_maps, residual_tokens
    from semirest.core.train.trainer import build_model

    cfg, note = speed_config(run, preset)
    dev = run.device
    extractor = FeatureExtractor(cfg.features, dev)
    h = w = cfg.features.image_size // 8
    # the bank the preset would keep on this category (coreset_ratio of all training patches, at
    # most max_size): rows of as many training images' features, unselected (speed only)
    n_entries = max(1, round(cfg.bank.coreset_ratio * len(cat.train) * h * w))
    if cfg.bank.max_size > 0:
        n_entries = min(n_entries, cfg.bank.max_size)
    n_bank_images = min(len(cat.train), -(-n_entries // (h * w)))
    feats = extractor.extract_all(load_images(cat.train[:n_bank_images]))
    rows = np.ascontiguousarray(feats.reshape(-1, feats.shape[-1])[:n_entries])
    bank = MemoryBank(rows, np.arange(len(rows)) // (h * w), **bank_index_options(cfg.bank))
    searcher = BankSearcher(bank, dev)
    log(f"speed {preset}: bank of {len(rows)} entries ready")
    torch.manual_seed(0)
    model = build_model(cfg).to(dev).eval()
    n_time = 2 if run.dry else 20
    warm = 1 if run.dry else 3
    images = load_images(cat.test[:n_time + warm])
    res: dict = {"backbone": cfg.features.backbone, "image_size": cfg.features.image_size,
                 "tokens": [h, w], "bank_entries": len(rows),
                 "backbone_params_M": round(sum(p.numel() for p in extractor.net.parameters()) / 1e6, 2),
                 "swin_params_M": round(count_parameters(model) / 1e6, 2), "timed_images": n_time}
    if note:
        res["note"] = note
    for amp in (False, True):
        c = copy.deepcopy(cfg)
        c.train.amp = amp
        pcr, swin, whole = [], [], []
        for i, im in enumerate(images):
            sync(dev)
            t0 = time.perf_counter()
            f = extractor([im])[0]
            tokens = residual_tokens(c, f.to(searcher.device), searcher, 1.0)[0].to(dev)
            sync(dev)
            t1 = time.perf_counter()
            with autocast(c, dev):
                m = predict_bagged(model, tokens, c.model.mu, c.model.step, 64)
            m.float().cpu()
            t2 = time.perf_counter()
            with autocast(c, dev):
                predict_whole(model, tokens).float().cpu()
            t3 = time.perf_counter()
            if i >= warm:
                pcr.append(t1 - t0)
                swin.append(t2 - t1)
                whole.append(t3 - t2)
        key = "bf16" if amp else "fp32"
        # the PCR half runs in float32 either way (train.amp covers the Swin): timed in both
        # passes, the first is the figure, the second shows its spread
        res["pcr_ms" if not amp else "pcr_ms_second_pass"] = round(1000 * median(pcr), 2)
        res[f"swin_bagged_ms_{key}"] = round(1000 * median(swin), 2)
        res[f"swin_single_ms_{key}"] = round(1000 * median(whole), 2)
        res[f"fps_batch1_{key}"] = round(1.0 / (median(pcr) + median(swin)), 2)
        n_batch = 4 if run.dry else 64
        batch = (images * (-(-n_batch // len(images))))[:n_batch]
        predict_maps(c, model, extractor, searcher, 1.0, batch[:cfg.features.batch_size])  # warm-up
        sync(dev)
        t0 = time.perf_counter()
        predict_maps(c, model, extractor, searcher, 1.0, batch)
        sync(dev)
        res[f"batched_images_per_s_{key}"] = round(n_batch / (time.perf_counter() - t0), 2)
    res["batch_size"] = cfg.features.batch_size
    res["windows_per_image"] = len(window_origins((h, w), cfg.model.mu, cfg.model.step))
    if dev.type == "cuda":
        res["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    return res


# -- stage d: torchrun, NCCL, GPU faiss ----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(run: Run, nproc: int, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port())] + args
    env = dict(os.environ, OMP_NUM_THREADS="1" if run.dry else os.environ.get("OMP_NUM_THREADS", "4"))
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def stage_dist(run: Run) -> dict:
    import torch

    from semirest.core import files
    from semirest.core.data.demo import make_demo_dataset

    dev = run.device
    nproc = torch.cuda.device_count() if dev.type == "cuda" else 1
    data = run.work / "dist-data"
    size = 64 if run.dry else 256
    make_demo_dataset(data, seed=0, n_train=8 if run.dry else 24, n_test_good=1, n_per_defect=1, size=size)
    steps = 3 if run.dry else 20
    over = run.overrides() if run.dry else ["train.synthetic_pool=16", "train.normal_pool=16"]
    args = ["-m", "semirest.core.cli", "train", "--data", str(data), "--category", "demo", "--out",
            str(run.work / "dist-run"), "--steps", str(steps), "--device", dev.type, "--quiet",
            "--rank-weights", str(run.work / "dist-ranks")]
    for s in over:
        args += ["--set", s]
    out: dict = {"nproc": nproc, "preset": "fast", "steps": steps}
    timeout = max(10.0, min(run.budget.left() - 5, 120))
    t0 = time.perf_counter()
    logs = []
    try:
        proc = torchrun(run, nproc, args, timeout)
        logs.append(proc.stdout + proc.stderr)
        out["train_returncode"] = proc.returncode
    except subprocess.TimeoutExpired:
        out["train_returncode"] = None
        logs.append(f"semirest train under torchrun timed out after {timeout:.0f} s")
    out["train_wall_s"] = round(time.perf_counter() - t0, 1)
    info = run.work / "dist-ranks" / "rank0.json"
    if info.is_file():
        r0 = json.loads(info.read_text())
        out.update(backend=r0["backend"], world_size=r0["world_size"], trained_steps=r0["steps"],
                   losses_finite=all(x == x and abs(x) != float("inf") for x in r0["losses"]),
                   wrote_checkpoint=r0["wrote_checkpoint"])
    tj = run.work / "dist-run" / "train.json"
    if tj.is_file():
        t = json.loads(tj.read_text())
        out.update(fit_s=t["fit_s"], device_used=t["device"])
    if out.get("world_size") == 1:
        out["note"] = ("world size 1 (one GPU): the process group is joined with the backend above, and DDP is "
                       "off by design at one rank (distributed.DistContext.active); the all-reduce below goes "
                       "through the same group")
    # an all-reduce through the process group that init_from_env joins (NCCL on a GPU)
    probe = run.work / "dist-probe"
    try:
        proc = torchrun(run, nproc, [str(Path(__file__).resolve()), "--_collective-probe", str(probe),
                                     "--device", dev.type], max(10.0, min(run.budget.left() - 5, 60)))
        logs.append(proc.stdout + proc.stderr)
        if (probe / "rank0.json").is_file():
            out["collective"] = json.loads((probe / "rank0.json").read_text())
        else:
            out["collective"] = {"error": f"probe exited {proc.returncode}"}
    except subprocess.TimeoutExpired:
        out["collective"] = {"error": "probe timed out"}
    files.write_atomic(run.out / "dist.log", "\n\n".join(logs))
    out["log"] = "dist.log"
    out["faiss_gpu"] = faiss_gpu_check(run)
    return out


def collective_probe(folder: str, device_spec: str) -> int:
    """Inside torchrun: join the job as `semirest train` does, all-reduce every rank's (rank + 1),
    and write what was seen to folder/rank<R>.json."""
    ensure_importable()
    import torch
    import torch.distributed as dist

    from semirest.core import distributed, files

    ctx, device = distributed.init_from_env(device_spec)
    try:
        x = torch.full((1024,), float(ctx.rank + 1), device=device)
        sync(device)
        t0 = time.perf_counter()
        dist.all_reduce(x)
        sync(device)
        seconds = time.perf_counter() - t0
        want = ctx.world_size * (ctx.world_size + 1) / 2
        Path(folder).mkdir(parents=True, exist_ok=True)
        files.write_json(Path(folder) / f"rank{ctx.rank}.json", {
            "backend": ctx.backend, "world_size": ctx.world_size, "device": str(device),
            "all_reduce_ok": bool(torch.all(x == want)), "all_reduce_ms": round(1000 * seconds, 3)})
    finally:
        distributed.shutdown()
    return 0


def faiss_gpu_check(run: Run) -> dict:
    """faiss' GPU index against its CPU one on random entries, when faiss has GPU support."""
    import numpy as np

    from semirest.core.memory.bank import MemoryBank, gpu_faiss_available

    try:
        import faiss
    except ImportError as exc:
        return {"skipped": f"faiss is not importable ({exc})"}
    if not gpu_faiss_available():
        return {"skipped": f"faiss {faiss.__version__} has no GPU support here (a faiss-cpu build, or no CUDA device); "
                           "the bank's 1-NN searches run on torch (memory.bank.BankSearcher) instead"}
    rng = np.random.default_rng(0)
    n, d, q = (20000, 1024, 20000) if not run.dry else (2000, 64, 500)
    x = rng.standard_normal((n, d)).astype(np.float32)
    queries = rng.standard_normal((q, d)).astype(np.float32)
    times = {}
    found = {}
    for use_gpu in (False, True):
        bank = MemoryBank(x, use_gpu=use_gpu)
        bank.search(queries[:100], 1)
        t0 = time.perf_counter()
        found[use_gpu] = bank.search(queries, 1).indices
        times[use_gpu] = time.perf_counter() - t0
    return {"entries": n, "dim": d, "queries": q, "cpu_s": round(times[False], 3), "gpu_s": round(times[True], 3),
            "same_1nn_share": round(float(np.mean(found[False] == found[True])), 4)}


# -- stage c: accuracy at scale -----------------------------------------------------------------------
def accuracy_overrides(run: Run) -> tuple[list[str], list[str]]:
    """The paper preset on the chosen backbone; returns (overrides, notes)."""
    a = run.args
    if run.dry:
        return run.overrides() + ["device=\"cpu\""], ["dry run: toy sizes"]
    over = [f"features.backbone=\"{a.backbone}\"", f"device=\"{run.device}\"", f"bank.max_size={a.bank_max}"]
    notes = [f"paper preset on {a.backbone}",
             f"bank capped at {a.bank_max} entries (the paper's 10 % of screw's 1.3 M patches is 131 k, and the greedy "
             "coreset runs on the CPU: minutes at that size)"]
    if a.weights:
        over.append(f"features.weights=\"{a.weights}\"")
    if run.device.type == "cuda" and a.amp:
        over.append("train.amp=true")
        notes.append("Swin under bf16 autocast in training and prediction (train.amp)")
    return over, notes


def stage_accuracy(run: Run) -> dict:
    out: dict = {}
    for name in ("screw", "magnetic_tile"):
        cat = load_category(run, name)
        if cat is None:
            out[name] = {"skipped": f"no {name} data under {run.args.data}"}
            continue
        if run.dry and name != "screw":
            out[name] = {"skipped": "dry run: screw only (magnetic_tile runs the same code)"}
            continue
        est = run.est("accuracy") * (1 if name == "screw" else len(cat.train) / 320)
        if not run.budget.allows(est):
            out[name] = {"skipped": run.budget.skip_note(f"{name} (preparation and a few steps)", est)}
            continue
        try:
            out[name] = accuracy_of(run, cat)
        except Exception as exc:  # noqa: BLE001 - one category's failure is a result, the next still runs
            out[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        run.results["stages"]["accuracy"] = out
        run.save()
    return out


def accuracy_of(run: Run, cat) -> dict:
    """un, sup, semi on one category with one preparation: prepare_training_data once with the 10
    labelled images (sup's), then each setting's labels by relabel(), exactly as SemiREST.fit
    derives semi's from its un stage; the rows share the bank, the synthetic pool and the test images
    (the test set without the 10 labelled ones)."""
    import torch

    from semirest.core.config import TrainConfig, make_config, semi_rampup_steps
    from semirest.core.data.datasets import split_budget
    from semirest.core.memory.bank import BankSearcher
    from semirest.core.metrics import evaluate
    from semirest.core.data.datasets import load_images
    from semirest.core.features.extractor import FeatureExtractor
    from semirest.core.maps import predict_maps
    from semirest.core.train.trainer import Trainer, TrainingCancelled, prepare_training_data, relabel

    dev = run.device
    over, notes = accuracy_overrides(run)
    cfgs = {s: make_config("paper", s, over) for s in ("un", "sup", "semi")}
    labelled, test = split_budget(cat.test, 10, cfgs["sup"].seed)
    log(f"accuracy {cat.name}: {len(cat.train)} training images, {len(test)} test images, {len(labelled)} labelled")
    t0 = time.perf_counter()
    train_images = load_images(cat.train)
    real = []
    for s in labelled:
        im = s.load_image()
        real.append((im, s.load_mask(im.shape[:2])))
    fc = cfgs["sup"]
    extractor = FeatureExtractor(fc.features, dev, fc.bank.stream_threshold, fc.bank.stream_dtype, fc.bank.stream_dir)
    data = prepare_training_data(fc, extractor, train_images, cat.name, progress_printer(), real)
    del train_images
    prep_s = time.perf_counter() - t0
    searcher = BankSearcher(data.bank, dev)
    test_images = load_images(test)
    masks = [s.load_mask(im.shape[:2]) for s, im in zip(test, test_images)]
    datas = {"un": replace(data, synthetic=relabel(cfgs["un"], data.synthetic), real=None), "sup": data,
             "semi": replace(data, synthetic=relabel(cfgs["semi"], data.synthetic),
                             real=relabel(cfgs["semi"], data.real, semi=True))}
    res: dict = {"category": cat.name, "n_train": len(cat.train), "n_test": len(test), "labelled": len(labelled),
                 "backbone": fc.features.backbone, "image_size": fc.features.image_size,
                 "bank_entries": len(data.bank.features), "prepare_s": round(prep_s, 1),
                 "swin": {k: getattr(fc.model, k) for k in ("embed_dim", "depth", "num_heads", "window_size", "mu", "step")},
                 "notes": notes}
    log(f"accuracy {cat.name}: prepared in {prep_s:.1f} s, bank {res['bank_entries']} entries")

    # measured times: a few steps of each setting and the prediction of a few test images
    per_step = {}
    probe_model = None
    for s in ("un", "sup", "semi"):
        c = copy.deepcopy(cfgs[s])
        c.train.steps = 10**6  # schedule irrelevant for a timing
        tr = Trainer(c, datas[s], dev, model=copy.deepcopy(probe_model).train() if s == "semi" and probe_model else None)
        tr.step()
        sync(dev)
        t1 = time.perf_counter()
        n_probe = 2 if run.dry else 4
        for _ in range(n_probe):
            tr.step()
        sync(dev)
        per_step[s] = (time.perf_counter() - t1) / n_probe
        if s == "un":
            probe_model = tr.ema.model
            # how much of a step is drawing the batch on the CPU (windows, neighbour rows, Eq. 12)
            t1 = time.perf_counter()
            for _ in range(n_probe):
                tr.sample_batch()
            sync(dev)
            res_sample_s = (time.perf_counter() - t1) / n_probe
    n_p = min(len(test_images), 2 if run.dry else 8)
    predict_maps(cfgs["un"], probe_model, extractor, searcher, data.residual_scale, test_images[:1])
    sync(dev)
    t1 = time.perf_counter()
    predict_maps(cfgs["un"], probe_model, extractor, searcher, data.residual_scale, test_images[:n_p])
    sync(dev)
    eval_s = (time.perf_counter() - t1) / n_p * len(test_images) + (2.0 if run.dry else 10.0)  # + metrics
    del probe_model
    res["measured"] = {"s_per_step": {k: round(v, 4) for k, v in per_step.items()},
                       "un_sample_batch_s": round(res_sample_s, 4), "eval_s_estimate": round(eval_s, 1)}

    slack = 3.0 if run.dry else 15.0
    left = run.budget.left() - slack - 3 * eval_s
    per_n = per_step["un"] + per_step["sup"] + SEMI_SHARE * per_step["semi"]
    n = int(left / per_n) if left > 0 else 0
    n = min(n, run.args.max_steps, PAPER_STEPS)
    min_steps = 2 if run.dry else 16
    if n < min_steps:
        res["skipped"] = (f"only {max(n, 0)} steps per setting would fit ({per_n:.3f} s per un+sup+3/8 semi step, "
                          f"{3 * eval_s:.0f} s for 3 evaluations, {run.budget.left():.0f} s left)")
        return res
    steps = {"un": n, "sup": n, "semi": max(1, round(SEMI_SHARE * n))}
    res["steps"] = steps
    res["steps_note"] = (f"{n} steps un and sup, {steps['semi']} semi fine-tuning steps from the un model "
                         f"(the paper: {PAPER_STEPS}, {PAPER_STEPS}, 3000)")
    log(f"accuracy {cat.name}: {res['steps_note']}")
    rows = []
    models = {}
    for s in ("un", "sup", "semi"):
        c = copy.deepcopy(cfgs[s])
        c.train.steps = steps[s]
        if s == "semi":
            c.train.rampup_steps = semi_rampup_steps(TrainConfig().rampup_steps, steps[s])
        est = steps[s] * per_step[s] + eval_s
        if not run.budget.allows(est):
            rows.append({"setting": s, "skipped": run.budget.skip_note(f"{s} ({steps[s]} steps + evaluation)", est)})
            continue
        t1 = time.perf_counter()
        start = copy.deepcopy(models["un"]).train() if s == "semi" else None
        if s == "semi" and start is None:
            rows.append({"setting": s, "skipped": "semi starts from the un model, which did not run"})
            continue
        tr = Trainer(c, datas[s], dev, model=start)
        # measured step times move with the machine's load: training stops early (keeping its EMA
        # model) rather than pass the budget, leaving time for this row's evaluation
        stop_at = eval_s + slack
        try:
            models[s] = tr.run(progress_printer(), should_stop=lambda: run.budget.left() < stop_at)
        except TrainingCancelled:
            models[s] = tr.ema.model
        sync(dev)
        train_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        maps = predict_maps(c, models[s], extractor, searcher, data.residual_scale, test_images)
        predict_s = (time.perf_counter() - t1) / len(test_images)
        m = evaluate(maps, masks)
        row = {"setting": s, "steps": tr.step_count, "planned_steps": steps[s], "train_s": round(train_s, 1),
               "s_per_step": round(train_s / max(1, tr.step_count), 4),
               "predict_s_per_image": round(predict_s, 4),
               "final_loss": round(sum(tr.losses[-20:]) / len(tr.losses[-20:]), 5),
               **{k: round(100 * float(m[k]), 2) for k in ("pixel_auroc", "pro", "ap", "image_auroc")}}
        log(f"accuracy {cat.name} {s}: AP {row['ap']}  PRO {row['pro']}  pixel AUROC {row['pixel_auroc']}")
        rows.append(row)
        res["rows"] = rows
        run.results["stages"].setdefault("accuracy", {})[cat.name] = res
        run.save()
    res["rows"] = rows
    if dev.type == "cuda":
        res["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    return res


def progress_printer():
    """A ProgressEvent callback printing each stage once at its end (a log, not a bar)."""
    def show(e) -> None:
        if e.done >= e.total:
            info = {k: v for k, v in e.info.items() if k in ("loss", "kept", "seconds")}
            log(f"  {e.stage} {e.done}/{e.total} {json.dumps(info) if info else ''}")
    return show


# -- results.md ---------------------------------------------------------------------------------------
def markdown(results: dict) -> str:
    meta, st = results["meta"], results["stages"]
    lines = [f"# GPU check{' (dry run, CPU, toy sizes)' if meta['dry_run'] else ''}", "",
             f"Started {meta['started_utc']} UTC on {meta['device']}, budget {meta['budget_s']} s, "
             f"{meta.get('elapsed_s', '?')} s used.", ""]
    for name in STAGES:
        r = st.get(name)
        lines.append(f"## {name}")
        lines.append("")
        if r is None:
            lines += ["not run", ""]
            continue
        if "skipped" in r or "error" in r:
            lines += [r.get("skipped") or f"error: {r['error']}", ""]
            continue
        if name == "env":
            t = r.get("tests", {})
            lines += ["| item | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in r.items() if k != "tests"]
            lines += ["", f"cuda tests on {t.get('device')}: {t.get('counts')} in {t.get('seconds')} s, "
                          f"return code {t.get('returncode')}" + (f"; failed: {', '.join(t['failed'])}" if t.get("failed") else ""), ""]
        elif name == "speed":
            lines += ["| preset | backbone @ px | bank | PCR ms | bagged Swin ms fp32 / bf16 | single Swin ms fp32 / bf16 "
                      "| FPS batch 1 fp32 / bf16 | batched img/s fp32 / bf16 |", "|---|---|---:|---:|---:|---:|---:|---:|"]
            for preset, s in r.items():
                if "skipped" in s:
                    lines.append(f"| {preset} | {s['skipped']} | | | | | | |")
                    continue
                lines.append(f"| {preset} | {s['backbone']} @ {s['image_size']} | {s['bank_entries']} | {s['pcr_ms']} | "
                             f"{s['swin_bagged_ms_fp32']} / {s['swin_bagged_ms_bf16']} | {s['swin_single_ms_fp32']} / "
                             f"{s['swin_single_ms_bf16']} | {s['fps_batch1_fp32']} / {s['fps_batch1_bf16']} | "
                             f"{s['batched_images_per_s_fp32']} / {s['batched_images_per_s_bf16']} |")
            lines += [""] + [f"{p}: {s['note']}" for p, s in r.items() if s.get("note")] + [""]
        elif name == "dist":
            c = r.get("collective", {})
            lines += [f"torchrun, {r.get('nproc')} process(es): backend {r.get('backend')}, world size {r.get('world_size')}, "
                      f"{r.get('trained_steps')} of {r.get('steps')} steps, losses finite {r.get('losses_finite')}, "
                      f"return code {r.get('train_returncode')}, {r.get('train_wall_s')} s.",
                      f"All-reduce through the group: {c}.", f"GPU faiss: {r.get('faiss_gpu')}.", ""]
        elif name == "accuracy":
            lines += ["| category | setting | steps | pixel AUROC | PRO | AP | image AUROC | train s | s/step |",
                      "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
            notes = []
            for key, a in r.items():
                if "rows" not in a:
                    notes.append(f"{key}: {a.get('skipped') or a.get('error')}")
                    continue
                cat = a["category"] if a["category"] == key else f"{a['category']} (for {key})"
                for row in a["rows"]:
                    if "skipped" in row:
                        lines.append(f"| {cat} | {row['setting']} | {row['skipped']} | | | | | | |")
                    else:
                        steps = row["steps"] if row["steps"] == row["planned_steps"] else f"{row['steps']} of {row['planned_steps']}"
                        lines.append(f"| {cat} | {row['setting']} | {steps} | {row['pixel_auroc']} | {row['pro']} | "
                                     f"{row['ap']} | {row['image_auroc']} | {row['train_s']} | {row['s_per_step']} |")
                notes.append(f"{cat}: {a['n_train']} training, {a['n_test']} test images (the same for every row), "
                             f"bank {a['bank_entries']}, prepared in {a['prepare_s']} s; {a.get('steps_note', '')}; "
                             + "; ".join(a.get("notes", [])))
            lines += [""] + notes + [""]
    return "\n".join(lines) + "\n"


# -- main ---------------------------------------------------------------------------------------------
RUNNERS = {"env": stage_env, "speed": stage_speed, "dist": stage_dist, "accuracy": stage_accuracy}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT"), help="output folder (default: $OUT)")
    ap.add_argument("--budget", type=float, default=None,
                    help=f"seconds for the whole run (default {REAL_BUDGET_S:.0f}; {DRY_BUDGET_S:.0f} with --dry-run)")
    ap.add_argument("--only", default=",".join(STAGES), help=f"comma-separated stages of {','.join(STAGES)}")
    ap.add_argument("--data", default=str(default_data_root()), help="data root holding mvtec/screw and magnetic_tile/")
    ap.add_argument("--backbone", default="efficientnet_lite2", help="accuracy stage backbone (default efficientnet_lite2)")
    ap.add_argument("--weights", default=None, help="weight file of --backbone (e.g. a WRN-50 state dict)")
    ap.add_argument("--bank-max", type=int, default=16384, help="accuracy stage: bank.max_size (default 16384)")
    ap.add_argument("--max-steps", type=int, default=None,
                    help=f"accuracy stage: at most this many steps per setting (default {PAPER_STEPS}; {DRY_STEPS} with --dry-run)")
    ap.add_argument("--no-amp", dest="amp", action="store_false", help="accuracy stage: float32 Swin on the GPU")
    ap.add_argument("--device", default="cuda", help="device of a real run (default cuda)")
    ap.add_argument("--dry-run", action="store_true", help="every stage on the CPU at toy sizes (a few minutes)")
    ap.add_argument("--_collective-probe", dest="collective_probe", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.collective_probe is None and not args.out:
        ap.error("--out DIR is required when $OUT is not set")
    if args.budget is None:
        args.budget = DRY_BUDGET_S if args.dry_run else REAL_BUDGET_S
    if args.max_steps is None:
        args.max_steps = DRY_STEPS if args.dry_run else PAPER_STEPS
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        # one thread per process: on a small shared CPU, torch's default of one per core ran the
        # dry run's speed stage 5x slower under load (busy-waiting threads) than one thread did
        os.environ["OMP_NUM_THREADS"] = "1"
    if args.collective_probe is not None:
        return collective_probe(args.collective_probe, args.device)
    ensure_importable()
    stages = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        print(f"gpu_check: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    run = Run(args)
    log(f"device {run.device}, budget {args.budget:.0f} s, stages {', '.join(stages)}, data {args.data}")
    try:
        for name in STAGES:  # fixed order: the elastic accuracy stage last
            if name not in stages:
                continue
            if not run.budget.allows(run.est(name)):
                run.results["stages"][name] = {"skipped": run.budget.skip_note(f"stage {name}", run.est(name))}
                log(run.results["stages"][name]["skipped"])
                continue
            log(f"stage {name} ({run.budget.left():.0f} s left)")
            t0 = time.perf_counter()
            try:
                r = RUNNERS[name](run)
            except Exception as exc:  # noqa: BLE001 - a failed stage is a finding; the others still run
                r = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
                log(f"stage {name} failed: {r['error']}")
            run.results["meta"].setdefault("stage_s", {})[name] = round(time.perf_counter() - t0, 1)
            run.results["stages"][name] = r
            run.save()
        run.save()
        log(f"done in {run.budget.elapsed():.0f} s; {run.out / 'results.json'}, {run.out / 'results.md'}")
    finally:
        shutil.rmtree(run.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
