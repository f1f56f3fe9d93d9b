import pytest
import torch
from torch import nn

from semirest.core.model.bagging import (axis_origins, bag_windows, extract_windows, predict_bagged,
                                         predict_whole, window_origins)


def test_axis_origins_regular_and_flush():
    assert axis_origins(64, 32, 8) == [0, 8, 16, 24, 32]         # paper: 5 per axis -> 25 windows
    assert axis_origins(40, 32, 8) == [0, 8]
    assert axis_origins(45, 32, 8) == [0, 8, 13]                  # flush last window
    assert axis_origins(32, 32, 8) == [0]
    assert axis_origins(20, 32, 8) == [0]                         # smaller than a window


def test_window_origins_cover_every_token():
    for h, w in [(64, 64), (45, 37), (33, 80), (10, 50)]:
        o = window_origins((h, w), 32, 8)
        cover = torch.zeros(max(h, 32), max(w, 32))
        for r, c in o.tolist():
            assert 0 <= r and 0 <= c
            cover[r:r + 32, c:c + 32] += 1
        assert (cover[:h, :w] >= 1).all()
    assert window_origins((64, 64), 32, 8).shape == (25, 2)
    assert window_origins((64, 64), 32, 8)[:3].tolist() == [[0, 0], [0, 8], [0, 16]]


def test_extract_windows_slices_eq8():
    t = torch.arange(5 * 6, dtype=torch.float32).view(5, 6, 1).repeat(1, 1, 2)
    o = torch.tensor([[0, 0], [1, 2], [2, 3]])
    w = extract_windows(t, o, 3)
    assert w.shape == (3, 3, 3, 2)
    assert torch.equal(w[1], t[1:4, 2:5])
    assert torch.equal(w[2], t[2:5, 3:6])


def test_extract_windows_pads_small_maps():
    t = torch.ones(2, 3, 4)
    w = extract_windows(t, window_origins((2, 3), 4, 2), 4)
    assert w.shape == (1, 4, 4, 4)
    assert torch.equal(w[0, :2, :3], t)
    assert w[0, 2:].abs().sum() == 0 and w[0, :, 3:].abs().sum() == 0


def test_bag_windows_hand_computed():
    # 3x4 map, windows of 2 with step 1 along rows only at col 0 and col 2:
    # origins (0,0), (0,2), (1,0), (1,2); window i is filled with value v_i.
    o = torch.tensor([[0, 0], [0, 2], [1, 0], [1, 2]])
    v = torch.tensor([1.0, 2.0, 3.0, 5.0])
    maps = v.view(4, 1, 1).expand(4, 2, 2).clone()
    got = bag_windows(maps, o, (3, 4))
    # row 0: only windows 0 (cols 0-1) and 1 (cols 2-3); row 1: windows 0+2 / 1+3; row 2: 2 / 3
    expected = torch.tensor([[1.0, 1.0, 2.0, 2.0],
                             [2.0, 2.0, 3.5, 3.5],
                             [3.0, 3.0, 5.0, 5.0]])
    assert torch.allclose(got, expected)


def test_bag_windows_position_dependent_values():
    # window maps that vary inside the window: two overlapping 2x2 windows on a 2x3 map
    o = torch.tensor([[0, 0], [0, 1]])
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]],
                         [[10.0, 20.0], [30.0, 40.0]]])
    got = bag_windows(maps, o, (2, 3))
    expected = torch.tensor([[0.0, (1 + 10) / 2, 20.0],
                             [2.0, (3 + 30) / 2, 40.0]])
    assert torch.allclose(got, expected)


def test_bag_windows_crops_small_map():
    maps = torch.arange(16, dtype=torch.float32).view(1, 4, 4)
    got = bag_windows(maps, torch.tensor([[0, 0]]), (2, 3))
    assert torch.equal(got, maps[0, :2, :3])


class _ChannelZeroModel(nn.Module):
    """Logits (0, x[..., 0]) so that the anomaly probability is sigmoid(token channel 0)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        z = x[..., 0] + 0 * self.dummy
        return torch.stack([torch.zeros_like(z), z], dim=-1)


def test_predict_bagged_of_a_position_only_model_is_exact():
    # A model whose output depends only on the token itself must give back its per-token map exactly,
    # whatever the overlap: a check of extraction + bagging + batching together.
    torch.manual_seed(0)
    t = torch.randn(13, 11, 3)
    m = _ChannelZeroModel().train()
    p = predict_bagged(m, t, mu=4, step=3, batch_size=5)
    assert p.shape == (13, 11)
    assert torch.allclose(p, torch.sigmoid(t[..., 0]), atol=1e-6)
    n_windows = len(window_origins((13, 11), 4, 3))
    assert sum(m.calls) == n_windows and max(m.calls) <= 5
    assert m.training  # mode restored
    assert torch.allclose(predict_whole(m, t), torch.sigmoid(t[..., 0]), atol=1e-6)


@pytest.mark.cuda
def test_predict_bagged_with_swin(device):
    from semirest.core.model.swin import ResidualSwin
    torch.manual_seed(0)
    m = ResidualSwin(in_dim=6, embed_dim=8, depth=2, num_heads=2, window_size=4, mlp_ratio=1.0,
                     drop_path=0.0, input_size=8).to(device)
    t = torch.randn(12, 10, 6).to(device)
    p = predict_bagged(m, t, mu=8, step=4, batch_size=2)
    assert p.shape == (12, 10) and p.device == t.device and torch.all((p > 0) & (p < 1))
    # first window alone, computed directly, agrees where only that window covers the map
    with torch.no_grad():
        m.eval()
        w0 = torch.softmax(m(t[None, :8, :8]), -1)[0, ..., 1]
    assert torch.allclose(p[:4, :2], w0[:4, :2], atol=1e-5)
    assert predict_whole(m, t).shape == (12, 10)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        bag_windows(torch.zeros(2, 3, 3), torch.zeros(3, 2, dtype=torch.long), (5, 5))
    with pytest.raises(ValueError):
        axis_origins(10, 4, 0)
