import pytest
import torch

from semirest.core.model.swin import PAPER_SWIN, ResidualSwin, SwinConfig, anomaly_probability, count_parameters

TINY = SwinConfig(in_dim=12, embed_dim=16, depth=2, num_heads=2, window_size=4, mlp_ratio=2.0,
                  drop_path=0.0, input_size=8)


@pytest.mark.cuda
def test_forward_shape_channels_last(device):
    torch.manual_seed(0)
    m = ResidualSwin(TINY).eval().to(device)
    y = m(torch.randn(3, 8, 8, 12, device=device))
    assert y.shape == (3, 8, 8, 2)
    p = anomaly_probability(y)
    assert p.shape == (3, 8, 8)
    assert torch.all((p >= 0) & (p <= 1))
    assert torch.allclose(p, torch.softmax(y, -1)[..., 1])


def test_blocks_alternate_shift():
    m = ResidualSwin(TINY)
    shifts = [tuple(b.shift_size) for b in m.stage.blocks]
    assert shifts == [(0, 0), (2, 2)]


def test_runs_on_whole_map_of_other_size():
    torch.manual_seed(0)
    m = ResidualSwin(TINY).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 12, 16, 12)).shape == (1, 12, 16, 2)
        assert m(torch.randn(1, 10, 6, 12)).shape == (1, 10, 6, 2)  # padded by timm, cropped back


def test_dynamic_mask_equals_precomputed_mask():
    # For a mu x mu input the per-call mask must equal timm's precomputed one.
    torch.manual_seed(0)
    m = ResidualSwin(TINY).eval()
    x = torch.randn(2, 8, 8, 12)
    with torch.no_grad():
        y_dyn = m(x)
        for b in m.stage.blocks:
            b.dynamic_mask = False
            b._init_buffers()
        y_static = m(x)
    shifted = m.stage.blocks[1]
    assert shifted.attn_mask is not None and (shifted.attn_mask < 0).any()
    assert torch.allclose(y_dyn, y_static, atol=1e-6)


@pytest.mark.cuda
def test_fused_attention_matches_plain(device):
    torch.manual_seed(0)
    m = ResidualSwin(TINY).eval().to(device)
    x = torch.randn(2, 8, 8, 12, device=device)
    with torch.no_grad():
        y_fused = m(x)
        for b in m.stage.blocks:
            b.attn.fused_attn = False
        y_plain = m(x)
    assert torch.allclose(y_fused, y_plain, atol=1e-5)


def test_shift_changes_output_across_window_borders():
    # The shifted block lets tokens of different windows talk; the result must depend on a token in
    # the neighbouring window (with one unshifted block only, it would not).
    torch.manual_seed(0)
    m = ResidualSwin(TINY).eval()
    x = torch.randn(1, 8, 8, 12)
    x2 = x.clone()
    x2[0, 0, 4] += 5.0  # column 4 lies in the right-hand window
    with torch.no_grad():
        d = (m(x) - m(x2)).abs()[0, 0, 3]  # token (0, 3) lies in the left-hand window
    assert d.max() > 1e-4


def test_bad_input_raises():
    m = ResidualSwin(TINY)
    with pytest.raises(ValueError):
        m(torch.randn(1, 12, 8, 8))  # channels-first by mistake


def test_paper_preset_parameter_count():
    # Hand count: per block 2 LN (2*2048) + qkv (1024*3072+3072) + proj (1024*1024+1024)
    # + relative bias (15*15*32) + MLP (1024*4096+4096 + 4096*1024+1024); plus input projection,
    # final LN and the 2-class head (no input LN by default; Table 6 says 51.44 M).
    block = 2 * 2048 + (1024 * 3072 + 3072) + (1024 * 1024 + 1024) + 15 * 15 * 32 \
        + (1024 * 4096 + 4096) + (4096 * 1024 + 1024)
    expected = 4 * block + (1024 * 1024 + 1024) + 2048 + (1024 * 2 + 2)
    with torch.device("meta"):
        m = ResidualSwin(PAPER_SWIN)
    n = count_parameters(m)
    assert n == expected == 51_467_394
    assert abs(n - 51.44e6) / 51.44e6 < 0.001  # paper Table 6


def test_default_input_keeps_residual_magnitude():
    # The anomaly evidence is the size of the residual. A LayerNorm right after the (bias-free at
    # init) input projection divides it out: scaling every token by 10 leaves the output unchanged.
    # The default (no input LayerNorm) must see the difference.
    torch.manual_seed(0)
    x = torch.rand(1, 8, 8, 12)
    with torch.no_grad():
        normed = ResidualSwin(SwinConfig(**{**TINY.__dict__, "input_norm": True})).eval()
        assert torch.allclose(normed(x), normed(10 * x), atol=1e-3)
        plain = ResidualSwin(TINY).eval()
        assert not plain.config.input_norm
        assert (plain(x) - plain(10 * x)).abs().max() > 1e-2


def test_magnitude_skip_adds_log_mean_residual_to_the_anomaly_logit():
    # With the head zeroed, the logits are exactly the skip: (0, a * log(mean residual) + b) with
    # a = 1, b = 0 at initialisation; a tiny residual is floored at MIN_MEAN_RESIDUAL, and a token
    # zeroed by PCR dropout reads as a typical normal one (log 1 = 0).
    from semirest.core.model.swin import MIN_MEAN_RESIDUAL

    torch.manual_seed(0)
    m = ResidualSwin(SwinConfig(**{**TINY.__dict__, "magnitude_skip": True})).eval()
    with torch.no_grad():
        m.head.weight.zero_()
        m.head.bias.zero_()
        x = torch.rand(2, 8, 8, 12) * 5
        x[0, 3, 4] = 0.0
        x[1, 1, 1] = 1e-6
        y = m(x)
    expected = torch.log(x.mean(-1).clamp_min(MIN_MEAN_RESIDUAL))
    expected[0, 3, 4] = 0.0
    assert torch.equal(y[..., 0], torch.zeros_like(y[..., 0]))
    assert torch.allclose(y[..., 1], expected, atol=1e-5)
    assert y[1, 1, 1, 1] == pytest.approx(float(torch.log(torch.tensor(MIN_MEAN_RESIDUAL))))
    assert y[0, 3, 4, 1] == 0.0
    # the skip's two numbers are trained like every other weight
    names = {n for n, p in m.named_parameters() if p.requires_grad}
    assert {"skip_scale", "skip_bias"} <= names
    assert "skip_scale" not in {n for n, _ in ResidualSwin(TINY).named_parameters()}
