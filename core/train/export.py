"""`semirest export-model`: the whole trained detector as one ONNX file that runs without torch.

The graph (:class:`DetectorGraph`) computes what :meth:`SemiREST.detect` computes, from a float32
NCHW RGB image in [0, 1] at the model's input size: the frozen backbone, the patch features with
their position code (PCF, Eq. 2), the nearest bank entry of every feature (the bank is a constant;
a float32 matmul shortlist of 16 candidates re-ranked by exact squared distance, as
:class:`~semirest.core.memory.bank.BankSearcher` does with its bf16 shortlist; no faiss), the scaled
residual and its tokens (Eq. 5-7), the Swin over the bagging windows (Eq. 8-10), bilinear
upsampling to the input size and the Gaussian blur of :func:`semirest.core.maps.upsample_and_smooth`
(reflect border), the image score (map maximum) and its normalisation
(:mod:`semirest.core.calibration`). Outputs: ``anomaly_map`` (N, H, W), ``score`` (N,) and
``normalised_score`` (N,). The batch size is free.

Ops that the ONNX exporters handle badly are written as what they compute: ``F.unfold`` as nine
shifted slices, ``adaptive_avg_pool1d`` (from 360 or 720 values to 1024 in the fast preset: not a
divisor, which ONNX pooling cannot express) as a constant averaging matrix, the reflect border as a
constant index gather. tests/unit/test_export.py checks the ONNX outputs against the checkpoint's.

One known difference: a feature that is itself a bank entry (an image of the training set, scored
without leave-one-out) has a residual of exactly 0 in torch, which the magnitude skip reads as a
dropped token (:mod:`semirest.core.model.swin`); the graph's features differ from torch's by ~1e-6
(pooling as a matmul), so there that token's score differs. New images never match exactly.

Metadata properties (``metadata_props``) are listed in :data:`METADATA_KEYS`.
"""
from __future__ import annotations

import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semirest.core import __version__
from semirest.core.calibration import Calibration, score_top_k, uses_bank
from semirest.core.maps import gaussian_radius
from semirest.core.memory.bank import residual, scale_residual
from semirest.core.model.bagging import window_origins
from semirest.core.model.swin import anomaly_probability
from semirest.core.model.tokens import expand_token_map, pcr_to_tokens

OPSET = 18
SHORTLIST = 16  # candidates re-ranked exactly, as BankSearcher's default
INPUT_NAME = "image"
OUTPUT_NAMES = ("anomaly_map", "score", "normalised_score")
FORMAT = "semirest-detector"
# every metadata property of the exported file (all strings; JSON where structured)
METADATA_KEYS = {
    "format": "semirest-detector",
    "semirest_version": "version of semirest that exported the file",
    "input_size": "model input as 'HxW' pixels (the input tensor is N x 3 x H x W, RGB in [0, 1])",
    "threshold": "raw image score above which an image is NG (calibrated; 0.5 when uncalibrated)",
    "normalised_threshold": "0.5: the threshold in normalised units",
    "false_alarm": "requested false-alarm rate of the threshold ('' when uncalibrated)",
    "calibrated": "'true' or 'false'",
    "calibration": "JSON of the calibration (score quantiles, images used, miss rate), or ''",
    "score": "how the image score is made (eval.image_score): 'max' or 'top:S' of anomaly_map (mean of its top "
             "share S); with '+bank', combined with the largest nearest-neighbour distance (calibration's components)",
    "preset": "configuration preset the model was trained with",
    "setting": "un, sup or semi",
    "category": "category / product name given at training",
    "training_date": "ISO 8601 UTC time the checkpoint was written ('' for older checkpoints)",
    "backbone": "feature backbone",
    "config": "JSON of the full training configuration",
}


def adaptive_pool_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_in, n_out) matrix M with x @ M == adaptive_avg_pool1d(x, n_out) (torch's bins)."""
    m = torch.zeros(n_in, n_out, dtype=torch.float64)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -((-(i + 1) * n_in) // n_out)
        m[start:end, i] = 1.0 / (end - start)
    return m.float()


def reflect_indices(n: int, radius: int) -> torch.Tensor:
    """Indices of a length-``n`` axis padded by ``radius`` with OpenCV's BORDER_REFLECT (edge
    repeated: ``cba|abc|cba``), also when the radius exceeds the axis."""
    return torch.from_numpy(np.pad(np.arange(n), radius, mode="symmetric").astype(np.int64))


def gaussian_kernel(sigma: float) -> torch.Tensor:
    import cv2

    k = 2 * gaussian_radius(sigma) + 1
    return torch.from_numpy(cv2.getGaussianKernel(k, float(sigma), cv2.CV_32F).ravel().astype(np.float32))


class DetectorGraph(nn.Module):
    """image (N, 3, H, W) float32 in [0, 1] -> (anomaly_map (N, H, W), score (N,), normalised_score (N,))."""

    def __init__(self, detector, calibration: Calibration | None):
        super().__init__()
        cfg = detector.cfg
        self.cfg = cfg
        net = detector.extractor.net
        self.backbone = net.backbone.cpu().eval()
        self.swin = detector.model.cpu().eval()
        self.h, self.w = detector.extractor.input_size
        with torch.no_grad():
            low, high = self.backbone(torch.zeros(1, 3, self.h, self.w))
        self.hf, self.wf = low.shape[-2:]
        k = net.neighbourhood
        self.k = k
        self.register_buffer("pool_low", adaptive_pool_matrix(low.shape[1] * k * k, net.pretrain_dim))
        self.register_buffer("pool_high", adaptive_pool_matrix(high.shape[1] * k * k, net.pretrain_dim))
        self.register_buffer("pool_all", adaptive_pool_matrix(2 * net.pretrain_dim, net.d_f))
        pe = net._pe(self.hf, self.wf, torch.device("cpu")) * net.lambda_pe if net.lambda_pe else torch.zeros(1)
        self.use_pe = bool(net.lambda_pe)
        self.register_buffer("pe", pe.float())
        bank = torch.from_numpy(np.ascontiguousarray(detector.bank.features, dtype=np.float32))
        self.register_buffer("bank", bank)
        self.register_buffer("bank_sq", (bank * bank).sum(1))
        self.shortlist = min(SHORTLIST, bank.shape[0])
        self.scale = float(detector.residual_scale)
        rho = cfg.model.rho
        self.ht, self.wt = self.hf // rho, self.wf // rho
        self.bagging = bool(cfg.model.bagging)
        self.mu = cfg.model.mu
        self.origins = window_origins((self.ht, self.wt), self.mu, cfg.model.step).tolist() if self.bagging else []
        if self.bagging:
            hp, wp = max(self.ht, self.mu), max(self.wt, self.mu)
            count = torch.zeros(hp, wp)
            for r, c in self.origins:
                count[r:r + self.mu, c:c + self.mu] += 1.0
            self.register_buffer("count", count.clamp_min(1.0))
        self.sigma = float(cfg.eval.sigma)
        if self.sigma > 0:
            radius = gaussian_radius(self.sigma)
            self.register_buffer("kernel", gaussian_kernel(self.sigma))
            self.register_buffer("rows_idx", reflect_indices(self.h, radius))
            self.register_buffer("cols_idx", reflect_indices(self.w, radius))
        self.threshold = float(calibration.threshold) if calibration is not None else None
        self.top_k = score_top_k(cfg.eval.image_score, self.h * self.w)
        # a "+bank" score's standardisation (map mean, spread, bank mean, spread); None: the map component alone
        comps = calibration.components if calibration is not None and uses_bank(cfg.eval.image_score) else {}
        self.components = (*comps["map"], *comps["bank"]) if comps else None

    def _neighbourhoods(self, fmap: torch.Tensor) -> torch.Tensor:
        """F.unfold(kernel k, padding k // 2) as k * k shifted slices: (B, C, h, w) -> (B, h, w, C*k*k)."""
        b, c, h, w = fmap.shape
        p = self.k // 2
        padded = F.pad(fmap, (p, p, p, p))
        shifts = [padded[:, :, i:i + h, j:j + w] for i in range(self.k) for j in range(self.k)]
        return torch.stack(shifts, dim=2).reshape(b, c * self.k * self.k, h, w)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> PCFs (B, h_f, w_f, d_f), as PatchFeatures.forward."""
        low, high = self.backbone(x)
        b = x.shape[0]
        parts = []
        for fmap, pool in ((low, self.pool_low), (high, self.pool_high)):
            nb = self._neighbourhoods(fmap)
            if nb.shape[-2:] != (self.hf, self.wf):
                nb = F.interpolate(nb, size=(self.hf, self.wf), mode="bilinear", align_corners=False)
            parts.append(nb.permute(0, 2, 3, 1).reshape(b * self.hf * self.wf, -1) @ pool)
        feats = torch.cat(parts, dim=1) @ self.pool_all
        feats = feats.reshape(b, self.hf, self.wf, -1)
        if self.use_pe:
            feats = feats + self.pe
        return feats

    def nearest(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, d) -> ((N, d) nearest bank entries, (N,) their squared distances): matmul shortlist, exact re-rank."""
        approx = self.bank_sq[None, :] - 2.0 * (q @ self.bank.T)
        cand = approx.topk(self.shortlist, dim=1, largest=False).indices
        diff = q[:, None, :] - self.bank[cand]
        exact = (diff * diff).sum(-1)
        nearest_sq, pick = exact.min(dim=1, keepdim=True)
        best = cand.gather(1, pick)[:, 0]
        return self.bank[best], nearest_sq[:, 0]

    def token_maps(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """PCFs (B, h_f, w_f, d) -> (anomaly probability per feature position (B, h_f, w_f), (B,) bank
        scores: the largest nearest-neighbour distance of each image's features)."""
        b, h, w, d = feats.shape
        q = feats.reshape(b * h * w, d)
        matched, nearest_sq = self.nearest(q)
        bank_scores = nearest_sq.reshape(b, h * w).amax(dim=1).sqrt()
        r = scale_residual(residual(q, matched, self.cfg.bank.residual), self.scale)
        tokens = pcr_to_tokens(r.reshape(b, h, w, d), self.cfg.model.rho)
        if not self.bagging:
            m = anomaly_probability(self.swin(tokens))
        else:
            mu = self.mu
            ph, pw = max(0, mu - self.ht), max(0, mu - self.wt)
            if ph or pw:
                tokens = F.pad(tokens, (0, 0, 0, pw, 0, ph))
            hp, wp = tokens.shape[1], tokens.shape[2]
            windows = torch.cat([tokens[:, r:r + mu, c:c + mu] for r, c in self.origins], dim=0)
            probs = anomaly_probability(self.swin(windows))  # (Q * B, mu, mu), window-major
            total = 0
            for i, (r, c) in enumerate(self.origins):
                total = total + F.pad(probs[i * b:(i + 1) * b], (c, wp - c - mu, r, hp - r - mu))
            m = (total / self.count)[:, :self.ht, :self.wt]
        return expand_token_map(m, self.cfg.model.rho), bank_scores

    def smooth(self, m: torch.Tensor) -> torch.Tensor:
        """(B, h, w) -> (B, H, W): bilinear upsampling, then the separable Gaussian, reflect border."""
        up = F.interpolate(m[:, None], size=(self.h, self.w), mode="bilinear", align_corners=False)
        if self.sigma <= 0:
            return up[:, 0]
        k = self.kernel.numel()
        up = up.index_select(2, self.rows_idx)
        up = F.conv2d(up, self.kernel.reshape(1, 1, k, 1))
        up = up.index_select(3, self.cols_idx)
        up = F.conv2d(up, self.kernel.reshape(1, 1, 1, k))
        return up[:, 0]

    def forward(self, image: torch.Tensor):
        token_maps, bank_scores = self.token_maps(self.features(image))
        maps = self.smooth(token_maps)
        flat = maps.flatten(1)
        score = flat.amax(dim=1) if self.top_k == 1 else flat.topk(self.top_k, dim=1).values.mean(dim=1)
        if self.components is not None:  # calibration.combine
            mm, ms, bm, bs = self.components
            score = torch.sigmoid(0.5 * ((score - mm) / ms + (bank_scores - bm) / bs))
        if self.threshold is None:
            normalised = score
        else:
            t = min(max(self.threshold, 1e-12), 1.0 - 1e-12)
            s = score.clamp(0.0, 1.0)
            normalised = torch.where(s <= t, 0.5 * s / t, 0.5 + 0.5 * (s - t) / (1.0 - t))
        return maps, score, normalised


def metadata(detector) -> dict[str, str]:
    cfg, cal = detector.cfg, detector.calibration
    meta = detector.metadata or {}
    h, w = detector.extractor.input_size
    return {
        "format": FORMAT,
        "semirest_version": __version__,
        "input_size": f"{h}x{w}",
        "threshold": repr(float(cal.threshold)) if cal else "0.5",
        "normalised_threshold": "0.5",
        "false_alarm": repr(float(cal.false_alarm)) if cal else "",
        "calibrated": "true" if cal else "false",
        "calibration": cal.to_json() if cal else "",
        "score": cfg.eval.image_score,
        "preset": cfg.preset,
        "setting": cfg.setting,
        "category": str(meta.get("category", detector.category_name)),
        "training_date": str(meta.get("trained_at", "")),
        "backbone": cfg.features.backbone,
        "config": json.dumps(cfg.to_dict()),
    }


def onnx_model_bytes(detector, opset: int = OPSET) -> bytes:
    """The serialised, checked ONNX model of ``detector`` (a fitted or loaded SemiREST) with its metadata."""
    import onnx

    if detector.cfg.features.input_scale > 0:
        raise ValueError("features.input_scale models have no fixed input size and cannot be exported")
    if getattr(detector.bank, "index_kind", "flat") != "flat":
        print("warning: the bank is searched through an approximate faiss index in torch; the exported "
              "detector searches it exactly, so maps may differ slightly", file=sys.stderr)
    graph = DetectorGraph(detector, detector.calibration).eval()
    example = torch.rand(2, 3, graph.h, graph.w)
    buf = io.BytesIO()
    # The TorchScript exporter: on the tiny test model it took 11 s where the dynamo exporter took
    # 171 s (2 shared cores), with the same outputs to 1e-6.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (example,), buf, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          opset_version=opset, dynamo=False,
                          dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME,) + OUTPUT_NAMES})
    model = onnx.load_from_string(buf.getvalue())
    del model.metadata_props[:]
    for k, v in metadata(detector).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    if model.ByteSize() >= 2**31:
        raise ValueError(f"the detector is {model.ByteSize() / 2**30:.1f} GiB, above ONNX's 2 GiB limit for one "
                         "file (a smaller bank: bank.max_size or bank.coreset_ratio)")
    data = model.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data


def export_detector(detector, out: str | os.PathLike, opset: int = OPSET) -> Path:
    """Write ``detector`` (a fitted or loaded SemiREST) as one ONNX file, checked and atomically."""
    from semirest.core.files import write_atomic

    out = Path(out)
    data = onnx_model_bytes(detector, opset)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(out, data)


def export_openvino(detector, out: str | os.PathLike) -> Path:
    """Write ``detector`` as OpenVINO IR (``out`` .xml plus its .bin), converted from the ONNX graph,
    with the metadata in the IR's rt_info under ``semirest``. Both files are written in a temporary
    folder next to ``out`` and then renamed into place (the .bin first: an .xml always finds its weights)."""
    import shutil
    import tempfile

    from semirest.core.deploy import import_openvino
    from semirest.core.files import _sync_folder

    ov = import_openvino()
    out = Path(out)
    data = onnx_model_bytes(detector)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", suffix=".tmp", dir=out.parent))
    try:
        onnx_path = tmp / "detector.onnx"
        onnx_path.write_bytes(data)
        # Core.read_model runs the same ONNX frontend as convert_model, which where torch is imported
        # first tries the file as a torch.export archive and logs that failure's traceback
        model = ov.Core().read_model(str(onnx_path))
        for k, v in metadata(detector).items():
            model.set_rt_info(v, ["semirest", k])
        xml = tmp / out.name
        ov.save_model(model, str(xml), compress_to_fp16=False)
        os.replace(xml.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(xml, out)
    except OSError as exc:
        raise OSError(exc.errno, f"{out}: could not be written ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _sync_folder(out.parent)
    return out


EXPORT_SUFFIXES = {"onnx": ".onnx", "openvino": ".xml"}


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike,
                      fmt: str = "onnx") -> tuple[Path, object]:
    """Load a run's checkpoint and write it as one ONNX detector, or as OpenVINO IR with ``fmt``
    "openvino" (``semirest export-model`` and the studio's Training > Export detector): returns
    (the file written, the loaded detector)."""
    from semirest.core.methods.semirest import SemiREST

    out = Path(out)
    suffix = EXPORT_SUFFIXES[fmt]
    if out.suffix.lower() != suffix:
        raise ValueError(f"{out}: the output must be an {suffix} file")
    if fmt == "openvino":
        from semirest.core.deploy import import_openvino

        import_openvino()  # the missing-package message before the checkpoint is loaded
    detector = SemiREST.load(checkpoint, "cpu")
    write = export_openvino if fmt == "openvino" else export_detector
    return write(detector, out), detector
