"""Run an exported SemiREST detector (``semirest export-model``) with onnxruntime, or an OpenVINO IR
export (``--format openvino``, the optional ``openvino`` package) with the OpenVINO runtime: no
torch, no faiss.

Imports only numpy, OpenCV and onnxruntime (and this package's torch-free image reading and
calibration formulas), so a line PC needs ``pip install numpy opencv-python-headless onnxruntime``
and this module. Images are read as RGB (grayscale, RGBA and 16-bit files converted as everywhere
in semirest: :func:`semirest.core.data.images.read_image`), resized to the model's input size
exactly as training did (OpenCV, area interpolation when shrinking, bilinear when enlarging) and
scaled to [0, 1]; the file does the rest (:mod:`semirest.core.train.export`).

Example::

    from semirest.core.deploy import Detector
    det = Detector("detector.onnx")
    result = det.inspect_files(["part.png"])[0]
    print(result.score, result.normalised_score, "NG" if result.ng else "OK")
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# onnxruntime 1.31 otherwise writes a telemetry device id and database under ~/.cache/Microsoft
# (measured: a first InferenceSession creates them); inspect writes nothing outside --out
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
import onnxruntime  # noqa: E402

from semirest.core.calibration import NORMALISED_THRESHOLD, Calibration, denormalise
from semirest.core.data.images import read_image, resize_batch

FORMAT = "semirest-detector"
OPENVINO_MISSING = 'OpenVINO detectors need the openvino package: pip install "semirest-studio[openvino]"'


def import_openvino():
    """The openvino module, or a DetectorError saying how to install it (it is an optional extra)."""
    try:
        import openvino
    except ImportError:
        raise DetectorError(OPENVINO_MISSING) from None
    return openvino


class DetectorError(ValueError):
    """The file is not a usable exported detector (the message names it), or its runtime is missing."""


@dataclass
class Verdict:
    score: float  # raw image score (map maximum, a probability)
    normalised_score: float  # 0.5 at the calibrated threshold
    ng: bool
    anomaly_map: np.ndarray  # (H, W) float32 at the model's input size


def to_input(images: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 images of any sizes -> float32 (N, 3, H, W) in [0, 1] at the model input size,
    resized as :func:`semirest.core.features.patches.images_to_tensor` does."""
    batch = resize_batch(images, size)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255.0)


class Detector:
    """An exported detector file, ready to score images (CPU by default)."""

    def __init__(self, path: str | os.PathLike, threads: int = 0, providers: Sequence[str] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DetectorError(f"{self.path}: no such detector file")
        if self.path.suffix.lower() == ".xml":
            self.metadata, self._infer = self._open_openvino(threads)
        else:
            self.metadata, self._infer = self._open_onnx(threads, providers)
        if self.metadata.get("format") != FORMAT:
            raise DetectorError(f"{self.path}: not a SemiREST detector (format {self.metadata.get('format')!r}); "
                                "make one with `semirest export-model`")
        try:
            h, w = (int(v) for v in self.metadata["input_size"].split("x"))
            self.threshold = float(self.metadata["threshold"])
        except (KeyError, ValueError):
            raise DetectorError(f"{self.path}: unreadable input_size / threshold metadata") from None
        self.input_size = (h, w)
        self.calibrated = self.metadata.get("calibrated") == "true"
        self.calibration = Calibration.from_json(self.metadata.get("calibration") or None)

    def _open_onnx(self, threads: int, providers: Sequence[str] | None):
        opts = onnxruntime.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
        try:
            session = onnxruntime.InferenceSession(str(self.path), opts,
                                                   providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own several types
            raise DetectorError(f"{self.path}: not a readable ONNX file ({str(exc).splitlines()[0]})") from None
        input_name = session.get_inputs()[0].name

        def infer(batch: np.ndarray):
            return tuple(session.run(None, {input_name: batch}))

        return dict(session.get_modelmeta().custom_metadata_map), infer

    def _open_openvino(self, threads: int):
        ov = import_openvino()
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as exc:  # noqa: BLE001 - openvino raises RuntimeError and its own types
            raise DetectorError(f"{self.path}: not a readable OpenVINO IR file ({str(exc).splitlines()[0]})") from None
        meta = {}
        if model.has_rt_info(["semirest"]):
            meta = {str(k): v.astype(str) for k, v in model.get_rt_info()["semirest"].items()}
        config = {"INFERENCE_NUM_THREADS": threads} if threads > 0 else {}
        # f32 inference: the default on some CPUs is bf16, which moves scores by ~1e-2
        config["INFERENCE_PRECISION_HINT"] = "f32"
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()

        def infer(batch: np.ndarray):
            result = request.infer({0: batch})
            return tuple(np.array(result[compiled.output(i)]) for i in range(3))

        return meta, infer

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float32 (N, 3, H, W) in [0, 1] -> (maps (N, H, W), scores (N,), normalised scores (N,))."""
        maps, scores, normalised = self._infer(np.ascontiguousarray(batch, np.float32))
        return maps, scores, normalised

    def detect(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB uint8 images of any size -> (maps at the input size, scores, normalised scores)."""
        return self.run(to_input(images, self.input_size))

    def score_threshold(self, normalised: float = NORMALISED_THRESHOLD) -> float:
        """The raw score threshold of a threshold in normalised units (uncalibrated: the same number)."""
        return denormalise(normalised, self.threshold) if self.calibrated else float(normalised)

    def inspect(self, images: Sequence[np.ndarray], threshold: float = NORMALISED_THRESHOLD) -> list[Verdict]:
        """OK / NG per image: NG when the normalised score is above ``threshold`` (0.5: the calibrated
        one), decided on the raw score against :meth:`score_threshold` (no float32 rounding of the
        normalisation at the threshold)."""
        maps, scores, normalised = self.detect(images)
        raw = self.score_threshold(threshold)
        return [Verdict(float(s), float(n), bool(s > raw), m) for m, s, n in zip(maps, scores, normalised)]

    def inspect_files(self, paths: Sequence[str | os.PathLike], threshold: float = NORMALISED_THRESHOLD) -> list[Verdict]:
        return self.inspect([read_image(p) for p in paths], threshold)
