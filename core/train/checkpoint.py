"""SemiREST checkpoints: one safetensors file with the EMA weights, the memory bank and the residual
scale, and the full config (JSON) in its metadata; also, from training runs since calibration
exists, ``calibration`` (JSON of :class:`semirest.core.calibration.Calibration`) and ``trained_at``
(ISO 8601 UTC). Checkpoints without them load with ``calibration`` None.

Why safetensors: loading never unpickles (a checkpoint from elsewhere cannot run code). Why one
file: the studio copies or deletes a model as one thing. Writes go to a temporary file in the same
folder, synced and moved into place (:mod:`semirest.core.files`), so a crash or a full disk never
leaves half a checkpoint.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from semirest.core.calibration import Calibration
from semirest.core.config import Config
from semirest.core.files import write_atomic
from semirest.core.memory.bank import MemoryBank
from semirest.core.memory.fit import bank_index_options
from semirest.core.model.swin import ResidualSwin
from semirest.core.train.trainer import build_model

FORMAT = "semirest-checkpoint"
VERSION = "1"
MODEL_PREFIX = "model."


class CheckpointError(ValueError):
    """The file is not a readable SemiREST checkpoint, or does not fit the requested config."""


@dataclass
class Checkpoint:
    config: Config
    model: ResidualSwin  # EMA weights, eval mode, on the CPU
    bank: MemoryBank
    residual_scale: float
    calibration: Calibration | None = None  # None: a checkpoint written before calibration existed
    metadata: dict | None = None  # the file's metadata strings (category, trained_at, ...)


def save_checkpoint(path: str | os.PathLike, cfg: Config, model: torch.nn.Module, bank: MemoryBank,
                    residual_scale: float, extra: dict[str, str] | None = None,
                    calibration: Calibration | None = None) -> Path:
    """Write checked and atomically (:func:`semirest.core.files.write_atomic`); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {MODEL_PREFIX + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({k: v.contiguous() for k, v in bank.state().items()})
    tensors["residual_scale"] = torch.tensor([residual_scale], dtype=torch.float64)
    meta = {"format": FORMAT, "version": VERSION, "config": json.dumps(cfg.to_dict())}
    meta["trained_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta.update(extra or {})
    if calibration is not None:
        meta["calibration"] = calibration.to_json()

    return write_atomic(path, save(tensors, metadata=meta))


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: checkpoint {va!r} vs requested {vb!r}")
    return out


def load_checkpoint(path: str | os.PathLike, expect: Config | None = None) -> Checkpoint:
    """Read a checkpoint (no unpickling). With ``expect``, the features, bank and model sections
    must match it (these decide what the weights mean); otherwise a CheckpointError lists the
    differences."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a SemiREST checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')!r}, this program reads {VERSION}")
    try:
        stored = json.loads(meta["config"])
        if isinstance(stored, dict) and isinstance(stored.get("features"), dict):
            # checkpoints from before features.input_size were trained on the square input
            stored["features"].setdefault("input_size", "square")
        cfg = Config.from_dict(stored)
    except (KeyError, ValueError, RecursionError) as exc:  # ConfigError and JSONDecodeError are ValueErrors
        raise CheckpointError(f"{path}: unreadable or invalid config in the checkpoint ({str(exc)[:200]})") from None
    if cfg.features.allow_download:
        raise CheckpointError(f"{path}: its config asks to download backbone weights (features.allow_download = true); "
                              "refused: this program never downloads at run time")
    if expect is not None:
        diffs = []
        for section in ("features", "bank", "model"):
            mine, asked = dict(getattr(cfg, section).__dict__), dict(getattr(expect, section).__dict__)
            if section == "features" and asked.get("input_size") in ("images", "square"):
                # a size still to be chosen from training images matches the size training chose
                mine.pop("input_size", None)
                asked.pop("input_size", None)
            diffs += _differences(mine, asked, section + ".")
        if diffs:
            raise CheckpointError(f"{path}: checkpoint was trained with another configuration "
                                  f"(preset {cfg.preset!r}): " + "; ".join(diffs))
    for key in ("bank.features", "bank.source_ids", "residual_scale"):
        if key not in tensors:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}'")
    feats, ids, scale = tensors["bank.features"], tensors["bank.source_ids"], tensors["residual_scale"]
    if (feats.ndim != 2 or feats.shape[0] == 0 or not feats.dtype.is_floating_point or ids.ndim != 1
            or ids.shape[0] != feats.shape[0] or ids.dtype.is_floating_point or ids.dtype == torch.bool):
        raise CheckpointError(f"{path}: the memory bank is not (N, d) features with N source ids")
    if scale.numel() != 1 or not torch.isfinite(scale.double()).all() or float(scale.reshape(-1)[0]) <= 0:
        raise CheckpointError(f"{path}: residual_scale must be one finite positive number")
    if feats.shape[1] != cfg.features.d_f:
        raise CheckpointError(f"{path}: bank dimension {feats.shape[1]} does not match features.d_f={cfg.features.d_f}")
    if not torch.isfinite(feats).all():
        raise CheckpointError(f"{path}: the memory bank holds NaN or infinite values")
    state = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
    try:  # the shapes the config implies, without allocating them: a config cannot make us build a huge model
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as exc:
        raise CheckpointError(f"{path}: its config does not describe a model this program builds ({str(exc)[:200]})") from None
    got = {k: tuple(v.shape) for k, v in state.items()}
    if want != got:
        missing = sorted(set(want) - set(got))[:3]
        odd = sorted(k for k in set(want) & set(got) if want[k] != got[k])[:3]
        extra = sorted(set(got) - set(want))[:3]
        raise CheckpointError(f"{path}: weights do not fit the model of its config (missing {missing}, other shape {odd}, "
                              f"unexpected {extra})")
    if any(not v.dtype.is_floating_point and v.dtype != torch.int64 for v in state.values()) or \
            not all(torch.isfinite(v).all() for v in state.values() if v.dtype.is_floating_point):
        raise CheckpointError(f"{path}: the weights hold NaN or infinite values (or are not numbers)")

    try:
        bank = MemoryBank.from_state({"bank.features": feats.float(), "bank.source_ids": ids.long()},
                                     **bank_index_options(cfg.bank))
    except (RuntimeError, ValueError, TypeError, MemoryError) as exc:
        raise CheckpointError(f"{path}: the memory bank cannot be indexed ({str(exc)[:200]})") from None
    model = build_model(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError(f"{path}: weights do not fit the model of its config: {' '.join(first)}") from None
    model.eval()
    try:
        calibration = Calibration.from_json(meta.get("calibration"))
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable calibration in the checkpoint ({exc})") from None
    return Checkpoint(cfg, model, bank, float(scale.reshape(-1)[0]), calibration, dict(meta))
