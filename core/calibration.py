"""Calibrated image scores: the threshold at a chosen false-alarm rate and the normalisation.

Torch-free (numpy only): the training code builds a :class:`Calibration` from the scores of normal
images the model has not fit on (:mod:`semirest.core.train.calibrate`), the checkpoint and the
exported detector carry it as JSON, and :mod:`semirest.core.deploy` and ``semirest inspect`` read it.

Image score: from the anomaly map at the model's input size (bilinear upsampling and Gaussian
smoothing at that size, ``eval.sigma``), so it does not depend on the size of the camera image and
the torch checkpoint and the ONNX detector compute the same number; ``eval.image_score`` "max" (its
maximum, the default) or "top:S" (the mean of its top share S of values), see :func:`score_top_k`.
With the suffix "+bank" (e.g. "top:0.01+bank") the score also weighs the bank's own evidence, the
largest nearest-neighbour distance of the image's features (PatchCore's image score on the same
bank): each component is standardised by its mean and spread on the calibration images and the
score is the logistic function of their mean, ``sigmoid((z_map + z_bank) / 2)`` (:func:`combine`),
a number in (0, 1) like the others. The two rank parts differently (the map knows context, the
distance knows how far a part lies from every normal one), so their mean ranks better than either
where they disagree (BENCHMARKS.md, image score). Without a calibration a "+bank" model scores by
its map component alone.

Decision: an image is NG when its score is above the threshold. The threshold is the smallest
calibration score with at most ``false_alarm`` of the calibration scores above it (with fewer than
1 / false_alarm images: their maximum).

Normalisation (every model's scores read the same; the threshold reads 0.5): the score, a
probability in [0, 1], is mapped piecewise linearly, [0, threshold] onto [0, 0.5] and
[threshold, 1] onto [0.5, 1]. It is monotonic, so a threshold in normalised units means one
in raw units (:meth:`Calibration.raw_threshold`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
DEFAULT_FALSE_ALARM = 0.01
NORMALISED_THRESHOLD = 0.5
# an uncalibrated model's scores are used as they are, against this threshold
UNCALIBRATED_NOTE = ("this model has no calibration (trained before calibration existed): scores are not "
                     "normalised and the threshold is 0.5 on the raw score; retrain, or pass --threshold")


BANK_SUFFIX = "+bank"


def uses_bank(spec: str) -> bool:
    """Whether ``eval.image_score`` combines the map with the bank's nearest-neighbour distance."""
    return spec.endswith(BANK_SUFFIX)


def score_top_k(spec: str, n_pixels: int) -> int:
    """How many of a map's ``n_pixels`` values the map component of the image score averages
    (``eval.image_score``): 1 for "max", round(S * n_pixels) (at least 1) for "top:S"."""
    spec = spec[:-len(BANK_SUFFIX)] if uses_bank(spec) else spec
    if spec == "max":
        return 1
    if spec.startswith("top:"):
        try:
            share = float(spec[4:])
        except ValueError:
            share = -1.0
        if 0.0 < share <= 1.0:
            return max(1, int(round(share * n_pixels)))
    raise ValueError("eval.image_score must be 'max' or 'top:S' with 0 < S <= 1 (e.g. top:0.001), optionally "
                     f"followed by '+bank' (e.g. top:0.01+bank), got {spec!r}")


def map_score(maps, spec: str = "max") -> np.ndarray:
    """The map component of (N, H, W) maps: the mean of each map's top k values (k from :func:`score_top_k`)."""
    flat = np.asarray(maps, dtype=np.float32).reshape(len(maps), -1)
    k = score_top_k(spec, flat.shape[1])
    if k == 1:
        return flat.max(axis=1)
    return np.sort(flat, axis=1)[:, -k:].mean(axis=1, dtype=np.float64).astype(np.float32)


def component_stats(values) -> list[float]:
    """[mean, spread] of one score component on the calibration images (spread floored so that a
    constant component cannot divide by zero)."""
    v = np.asarray(values, dtype=np.float64)
    return [float(v.mean()), float(max(v.std(), 1e-6 * max(1.0, abs(v.mean()))))]


def combine(map_scores, bank_scores, components: dict) -> np.ndarray:
    """``sigmoid((z_map + z_bank) / 2)``, each component standardised by ``components``
    ({"map": [mean, spread], "bank": [mean, spread]}, from the calibration images)."""
    (mm, ms), (bm, bs) = components["map"], components["bank"]
    z = 0.5 * ((np.asarray(map_scores, np.float64) - mm) / ms + (np.asarray(bank_scores, np.float64) - bm) / bs)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def image_score(maps, spec: str = "max", bank_scores=None, calibration: "Calibration | None" = None) -> np.ndarray:
    """Image scores of (N, H, W) maps at the model's input size (see the module docstring);
    ``bank_scores``: each image's largest nearest-neighbour distance, needed by a "+bank" score;
    ``calibration``: the component statistics a "+bank" score is standardised with."""
    m = map_score(maps, spec)
    if not uses_bank(spec) or calibration is None or not calibration.components:
        return m
    if bank_scores is None:
        raise ValueError(f"eval.image_score = {spec!r} needs each image's nearest-neighbour distance")
    return combine(m, bank_scores, calibration.components)


def normalise(score, threshold: float):
    """Raw score(s) in [0, 1] -> normalised score(s), ``threshold`` -> 0.5 (see the module docstring)."""
    s = np.clip(np.asarray(score, dtype=np.float64), 0.0, 1.0)
    t = float(np.clip(threshold, 1e-12, 1.0 - 1e-12))
    out = np.where(s <= t, 0.5 * s / t, 0.5 + 0.5 * (s - t) / (1.0 - t))
    return out if out.ndim else float(out)


def denormalise(value: float, threshold: float) -> float:
    """The raw score whose normalised score is ``value`` (inverse of :func:`normalise`)."""
    v = float(np.clip(value, 0.0, 1.0))
    t = float(np.clip(threshold, 1e-12, 1.0 - 1e-12))
    return 2.0 * v * t if v <= 0.5 else t + (v - 0.5) * 2.0 * (1.0 - t)


@dataclass
class Calibration:
    false_alarm: float  # requested share of normal images called NG
    threshold: float  # raw image score above which an image is NG
    n_images: int  # normal images scored
    n_unseen: int  # of those, how many the Swin never trained on (all were left out of the bank)
    quantiles: dict[str, float] = field(default_factory=dict)  # "0.99" -> score
    mean: float = 0.0
    std: float = 0.0
    method: str = "leave-one-out"  # each image's own bank entries excluded when it is scored
    score: str = "max"  # the image score, eval.image_score (see the module docstring)
    measured_false_alarm: float = 0.0  # share of the calibration scores above the threshold
    n_defect: int = 0  # labelled defective images scored (sup / semi), trained on
    miss_rate: float | None = None  # their share at or below the threshold
    # a "+bank" score's standardisation: {"map": [mean, spread], "bank": [mean, spread]}; {} otherwise
    components: dict[str, list[float]] = field(default_factory=dict)

    def normalise(self, score):
        return normalise(score, self.threshold)

    def raw_threshold(self, normalised: float) -> float:
        return denormalise(normalised, self.threshold)

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | None) -> "Calibration | None":
        if not text:
            return None
        data = json.loads(text)
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


def threshold_at(scores, false_alarm: float) -> float:
    """The smallest calibration score with at most ``false_alarm`` of the scores above it."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("no calibration scores")
    if not 0.0 <= false_alarm < 1.0:
        raise ValueError(f"the false-alarm rate must be in [0, 1), got {false_alarm}")
    s = np.sort(s.ravel())
    allowed = int(np.floor(false_alarm * s.size + 1e-9))  # images that may lie above
    return float(s[s.size - allowed - 1])


def calibrate_components(map_scores, bank_scores, false_alarm: float = DEFAULT_FALSE_ALARM, n_unseen: int = 0,
                         defect_map=None, defect_bank=None, score: str = "max") -> Calibration:
    """A :class:`Calibration` from the normal images' score components (``bank_scores`` None for a
    map-only score): a "+bank" score first takes its standardisation from these images, then its
    threshold from their combined scores."""
    if not uses_bank(score):
        return calibrate_scores(map_scores, false_alarm, n_unseen, defect_map, score)
    components = {"map": component_stats(map_scores), "bank": component_stats(bank_scores)}
    defects = None if defect_map is None else combine(defect_map, defect_bank, components)
    return calibrate_scores(combine(map_scores, bank_scores, components), false_alarm, n_unseen, defects,
                            score, components)


def calibrate_scores(scores, false_alarm: float = DEFAULT_FALSE_ALARM, n_unseen: int = 0,
                     defect_scores=None, score: str = "max", components: dict | None = None) -> Calibration:
    """A :class:`Calibration` from normal images' scores (and labelled defective ones' for the miss
    rate); ``components``: the standardisation the scores of a "+bank" score were combined with."""
    s = np.asarray(scores, dtype=np.float64)
    thr = threshold_at(s, false_alarm)
    cal = Calibration(
        false_alarm=float(false_alarm), threshold=thr, n_images=int(s.size), n_unseen=int(n_unseen),
        quantiles={f"{q:g}": float(np.quantile(s, q)) for q in QUANTILES},
        mean=float(s.mean()), std=float(s.std()), measured_false_alarm=float((s > thr).mean()), score=score,
        components=dict(components or {}))
    if defect_scores is not None and len(defect_scores):
        d = np.asarray(defect_scores, dtype=np.float64)
        cal.n_defect = int(d.size)
        cal.miss_rate = float((d <= thr).mean())
    return cal


@dataclass
class Outcome:
    """What a threshold does to images whose condition is known: good ones rejected, defective ones missed."""

    good_rejected: int
    n_good: int
    defect_missed: int
    n_defect: int

    def text(self) -> str:
        parts = []
        if self.n_good:
            parts.append(f"{self.good_rejected} of {self.n_good} good images rejected")
        if self.n_defect:
            parts.append(f"{self.defect_missed} of {self.n_defect} defect images missed")
        return "; ".join(parts) if parts else "no scored image of known condition (good or defective)"


def outcome_at(scores: dict, defective: dict, threshold: float) -> Outcome:
    """The :class:`Outcome` of raw ``threshold`` on ``scores`` ({image: score}) for the images whose
    condition ``defective`` ({image: bool}) knows; NG means a score above the threshold."""
    good = np.array([s for i, s in scores.items() if defective.get(i) is False], dtype=np.float64)
    bad = np.array([s for i, s in scores.items() if defective.get(i) is True], dtype=np.float64)
    return Outcome(int((good > threshold).sum()), int(good.size), int((bad <= threshold).sum()), int(bad.size))


def fallback_threshold(scores: dict, defective: dict, false_alarm: float = DEFAULT_FALSE_ALARM) -> float | None:
    """A raw threshold for a run without calibration: :func:`threshold_at` on the scores of its
    known-good images, else the median of all its scores (so about half the maps show); None
    without scores."""
    good = [s for i, s in scores.items() if defective.get(i) is False]
    if good:
        return threshold_at(good, false_alarm)
    if scores:
        return float(np.median(np.asarray(list(scores.values()), dtype=np.float64)))
    return None


def checkpoint_calibration(path) -> Calibration | None:
    """The calibration in a checkpoint's metadata, read without its weights or torch (the studio's
    threshold control reads it when a run is chosen). None for an uncalibrated or unreadable file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
        return Calibration.from_json(meta.get("calibration"))
    except (SafetensorError, OSError, ValueError, TypeError):
        return None
