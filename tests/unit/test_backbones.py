"""The embedded weights are real ImageNet weights, and missing weights fail clearly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from semirest.core.features.backbones import BackboneError, FeatureBackbone, build_classifier, get_spec
from semirest.core.features.patches import images_to_tensor

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_chelsea_is_a_cat(name):
    from skimage import data

    model = build_classifier(name)
    size = model.pretrained_cfg["input_size"][1]
    spec = get_spec(name)
    x = images_to_tensor([data.chelsea()], (size, size))
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        p = model(x).softmax(-1)[0]
    top = int(p.argmax())
    assert top in CAT_CLASSES, f"{name} classified chelsea as ImageNet class {top}"
    assert float(p[list(CAT_CLASSES)].sum()) > 0.8


@pytest.mark.cuda
def test_feature_backbone_is_frozen_and_gives_stride_8_and_16(device):
    bb = FeatureBackbone("efficientnet_lite0").to(device)
    bb.train()  # must stay in eval mode: BatchNorm statistics are part of the pretrained weights
    assert not bb.training and not any(p.requires_grad for p in bb.parameters())
    low, high = bb(torch.rand(1, 3, 128, 96, device=device))
    assert low.shape[-2:] == (16, 12) and high.shape[-2:] == (8, 6)
    assert bb.channels == [40, 112]


def test_wide_resnet_without_weights_says_what_to_do():
    with pytest.raises(BackboneError, match=r"needs ImageNet weights: pass a local weight file"):
        FeatureBackbone("wide_resnet50_2")


def test_wide_resnet_from_a_local_file(tmp_path):
    """The paper's backbone loads from a local state dict (here a random one, saved like torchvision's)."""
    import timm

    ref = timm.create_model("wide_resnet50_2", pretrained=False)
    torch.manual_seed(0)
    with torch.no_grad():
        ref.layer2[0].conv1.weight.normal_()
    torch.save(ref.state_dict(), tmp_path / "wrn.pth")
    bb = FeatureBackbone("wide_resnet50_2", weights=str(tmp_path / "wrn.pth"))
    assert torch.equal(bb.body.layer2[0].conv1.weight, ref.layer2[0].conv1.weight)
    assert bb.channels == [512, 1024]
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "wrn.safetensors"))
    bb2 = FeatureBackbone("wide_resnet50_2", weights=str(tmp_path / "wrn.safetensors"))
    assert torch.equal(bb2.body.layer2[0].conv1.weight, ref.layer2[0].conv1.weight)


def test_bad_weight_files(tmp_path):
    with pytest.raises(BackboneError, match="weight file not found"):
        FeatureBackbone("wide_resnet50_2", weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="not a loadable PyTorch weight file"):
        FeatureBackbone("wide_resnet50_2", weights=str(tmp_path / "junk.pth"))
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(BackboneError, match="weights do not match the model"):
        FeatureBackbone("wide_resnet50_2", weights=str(tmp_path / "other.pth"))
    with pytest.raises(BackboneError, match="unknown backbone 'resnet9000'"):
        FeatureBackbone("resnet9000")


def test_pickled_objects_are_not_executed(tmp_path):
    """A weight file that smuggles a Python object is refused (weights_only loading)."""

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(BackboneError, match="not a loadable PyTorch weight file"):
        FeatureBackbone("wide_resnet50_2", weights=str(tmp_path / "evil.pth"))


def test_images_to_tensor_resizes_any_size():
    imgs = [np.zeros((50, 70, 3), np.uint8), np.full((300, 200, 3), 255, np.uint8)]
    x = images_to_tensor(imgs, (64, 64))
    assert x.shape == (2, 3, 64, 64) and float(x[0].max()) == 0.0 and float(x[1].min()) == 1.0
