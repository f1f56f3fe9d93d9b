"""The preparation cache of a project: what a training run computes before its first step, kept
on disk beside the project (``<project>.sqlite.cache/``) so that Retrain and the next Start reuse it.

What is kept, and what each entry is keyed by (a SHA-256 of the JSON of its inputs):

* ``features/<key>.npy``: the PCFs of one image (float16, the precision the training sets hold),
  keyed by the image file (resolved path, size, modification time), the feature fields of the
  config (backbone, weights, image size, dimensions, neighbourhood, position code) and the
  backbone's weight file (path, size, modification time);
* ``prep/<key>/``: the coreset bank (entries and source images), the normal pool, the normal
  images' k-NN rows, the synthetic pool (PCFs, k-NN rows, pixel masks) and the residual scale,
  keyed by the ordered list of the normal images' feature keys, the bank fields, the seed, the
  pool sizes, the residual rule and the foreground category;
* ``labelled/<key>.npy``: one labelled image's k-NN rows, keyed by its feature key, the
  preparation entry (its bank) and k (its PCFs are in ``features/`` like any image's).

Token labels are not kept: they are recomputed from the masks and boxes at every run (cheap, and
they depend on the setting's eps). Changing the normal images (adding, removing, editing one)
gives a new preparation key, so the bank and the synthetic pool are rebuilt; the PCFs of the
images that did not change are reused (and the labelled images' PCFs; their k-NN rows are
recomputed against the new bank). Labelling an image outside the normal set only adds that
image's PCFs and k-NN rows.

Only the newest preparation entry is kept (a project has one normal set at a time); PCFs of
images that left the project stay until Clear cache.

Safety: every file is written to a temporary name, synced and renamed (:func:`write_atomic`); a
preparation entry is built in a temporary folder, its ``complete.json`` (listing every file with
its size) written last, and the folder renamed into place; an entry without that marker, with a
file missing or of another size, or that numpy cannot read, is never used and is rebuilt. Files
are numpy ``.npy`` / ``.npz`` read with ``allow_pickle=False`` and JSON: nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np

from semirest.core.config import Config, FeatureConfig
from semirest.core.files import write_atomic, write_json

FORMAT = 1  # bump when what an entry holds, or how it is computed, changes
MARKER = "complete.json"


def cache_folder(project_path: str | os.PathLike) -> Path:
    """A project's preparation cache lives next to it: ``<project>.sqlite.cache/``."""
    project_path = Path(project_path)
    return project_path.with_name(project_path.name + ".cache")


def file_identity(path: str | os.PathLike) -> dict:
    """What tells a file's content changed without reading it: resolved path, size, modification time."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ValueError(f"{p}: cannot be read ({exc.strerror}); expected an image file") from None
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def backbone_identity(fc: FeatureConfig) -> dict:
    """The backbone's name and the identity of the weight file it loads."""
    out: dict = {"backbone": fc.backbone}
    if fc.weights:
        out["weights"] = file_identity(fc.weights)
        return out
    from semirest.core.features.backbones import embedded_weight_file, get_spec

    spec = get_spec(fc.backbone)
    out["weights"] = file_identity(embedded_weight_file(spec)) if spec.weight_package else "timm hub"
    return out


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:32]


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


class PreparationCache:
    """One project's cache folder; every method is safe to call on a missing or damaged folder."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._backbones: dict[str, dict] = {}
        # writes that failed (a full disk, a read-only folder): the run goes on without caching them
        self.write_errors: list[str] = []

    # -- keys ---------------------------------------------------------------------------------
    def features_identity(self, fc: FeatureConfig) -> dict:
        fields = {k: v for k, v in asdict(fc).items() if k not in ("batch_size", "allow_download", "weights")}
        name = json.dumps(fields, sort_keys=True) + str(fc.weights)
        if name not in self._backbones:
            self._backbones[name] = {"format": FORMAT, "features": fields, "backbone": backbone_identity(fc)}
        return self._backbones[name]

    def image_key(self, path: str | os.PathLike, fc: FeatureConfig) -> str:
        """Key of one image's PCFs under ``fc``."""
        return digest({"image": file_identity(path), "features": self.features_identity(fc)})

    def preparation_key(self, cfg: Config, normal_keys: list[str], category: str) -> str:
        """Key of the bank, normal k-NN rows and synthetic pool made from these normal images."""
        bank = {k: v for k, v in asdict(cfg.bank).items() if k != "stream_dir"}
        tc = cfg.train
        return digest({"format": FORMAT, "normal": list(normal_keys), "bank": bank, "seed": cfg.seed,
                       "normal_pool": tc.normal_pool, "synthetic_pool": tc.synthetic_pool,
                       "residual_norm": tc.residual_norm, "category": category})

    @staticmethod
    def labelled_key(image_key: str, preparation_key: str, k: int) -> str:
        return digest({"format": FORMAT, "image": image_key, "preparation": preparation_key, "k": int(k)})

    # -- per-image PCFs -----------------------------------------------------------------------
    def _features_path(self, key: str) -> Path:
        return self.folder / "features" / f"{key}.npy"

    def load_features(self, key: str) -> np.ndarray | None:
        """One image's float16 PCFs, or None when absent or unreadable (then they are recomputed)."""
        path = self._features_path(key)
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return a if a.ndim == 3 and a.dtype == np.float16 else None

    def save_features(self, key: str, feats: np.ndarray) -> np.ndarray:
        """Store one image's PCFs (as float16); returns what was stored."""
        a = np.asarray(feats, dtype=np.float16)
        path = self._features_path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, _npy_bytes(a))
        except OSError as exc:
            self.write_errors.append(str(exc))
        return a

    # -- preparation entries ------------------------------------------------------------------
    def _entry(self, key: str) -> Path:
        return self.folder / "prep" / key

    def load_preparation(self, key: str) -> tuple[dict[str, np.ndarray], list[np.ndarray], dict] | None:
        """(arrays, synthetic masks, meta) of a complete entry, or None (absent, incomplete, damaged)."""
        folder = self._entry(key)
        try:
            marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
            if marker.get("key") != key:
                return None
            for name, size in marker["files"].items():
                if (folder / name).stat().st_size != size:
                    return None
            arrays = {n[:-4]: np.load(folder / n, allow_pickle=False) for n in marker["files"] if n.endswith(".npy")}
            with np.load(folder / "synthetic_masks.npz", allow_pickle=False) as z:
                masks = [z[f"m{i}"] for i in range(len(z.files))]
        except (OSError, ValueError, KeyError, EOFError, TypeError):
            return None
        return arrays, masks, marker.get("meta", {})

    def save_preparation(self, key: str, arrays: dict[str, np.ndarray], masks: list[np.ndarray], meta: dict) -> None:
        """Write an entry in a temporary folder, its marker last, then rename it into place (a
        failed write is noted in ``write_errors`` and leaves no entry)."""
        try:
            self._save_preparation(key, arrays, masks, meta)
        except OSError as exc:
            self.write_errors.append(str(exc))

    def _save_preparation(self, key, arrays, masks, meta) -> None:
        prep = self.folder / "prep"
        prep.mkdir(parents=True, exist_ok=True)
        tmp = prep / f".partial-{key}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            files = {}
            for name, a in arrays.items():
                files[f"{name}.npy"] = len(write_atomic_bytes(tmp / f"{name}.npy", _npy_bytes(a)))
            files["synthetic_masks.npz"] = len(write_atomic_bytes(
                tmp / "synthetic_masks.npz", _npz_bytes({f"m{i}": m for i, m in enumerate(masks)})))
            write_json(tmp / MARKER, {"key": key, "files": files, "meta": meta})
            target = self._entry(key)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for other in prep.iterdir():  # one bank per project: an older normal set's entry is dropped
            if other.name != key and not other.name.startswith("."):
                shutil.rmtree(other, ignore_errors=True)

    # -- k-NN rows of labelled images ---------------------------------------------------------
    def _rows_path(self, key: str) -> Path:
        return self.folder / "labelled" / f"{key}.npy"

    def load_rows(self, key: str) -> np.ndarray | None:
        """int64 k-NN rows (h_f, w_f, k) of one labelled image against one bank, or None."""
        try:
            a = np.load(self._rows_path(key), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return a if a.ndim == 3 and a.dtype == np.int64 else None

    def save_rows(self, key: str, rows: np.ndarray) -> None:
        path = self._rows_path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, _npy_bytes(np.asarray(rows, dtype=np.int64)))
        except OSError as exc:
            self.write_errors.append(str(exc))

    # -- size and clearing --------------------------------------------------------------------
    def keep_only(self, feature_keys: set[str], row_keys: set[str]) -> int:
        """Remove per-image PCFs and labelled k-NN rows whose keys a run did not use (images
        removed or edited, another input size or backbone, an older bank), so the cache holds
        one project state, as it holds one bank; returns the bytes freed."""
        freed = 0
        for sub, keep in (("features", feature_keys), ("labelled", row_keys)):
            folder = self.folder / sub
            if not folder.is_dir():
                continue
            for path in folder.glob("*.npy"):
                if path.stem not in keep:
                    try:
                        size = path.stat().st_size
                        path.unlink()
                        freed += size
                    except OSError:
                        pass
        return freed

    def size_bytes(self) -> int:
        return cache_size(self.folder)


def write_atomic_bytes(path: Path, data: bytes) -> bytes:
    write_atomic(path, data)
    return data


def cache_size(folder: str | os.PathLike) -> int:
    """Bytes held by the files under a cache folder (0 when there is none)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def project_cache_size(project_path: str | os.PathLike) -> int:
    """Bytes of a project's preparation cache."""
    return cache_size(cache_folder(project_path))


def clear_project_cache(project_path: str | os.PathLike) -> int:
    """Remove a project's preparation cache (only that folder); returns the bytes freed.
    The next run recomputes everything."""
    folder = cache_folder(project_path)
    freed = cache_size(folder)
    if folder.is_dir():
        shutil.rmtree(folder)
    return freed
