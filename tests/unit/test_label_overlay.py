"""The label overlay by class: composing any sub-rectangle (a brush dab's) gives the same pixels
as composing the whole image, and connected regions are found per class and label type."""
import numpy as np

from semirest.app.canvas.layers import LabelPalette
from semirest.app.canvas.overlay import compose_labels, label_bounds, label_regions


def labels(h=203, w=157, seed=0):
    rng = np.random.default_rng(seed)
    pixels = np.zeros((h, w), np.uint8)
    pixels[10:40, 5:60] = 2
    pixels[150:160, 100:150] = 1
    cells = {8: np.zeros((-(-h // 8), -(-w // 8)), np.uint8), 16: np.zeros((-(-h // 16), -(-w // 16)), np.uint8)}
    cells[8][rng.random(cells[8].shape) < 0.1] = 3
    cells[16][2:5, 3:9] = 1
    cells[16][-1, -1] = 2  # a cell cut by the image's edge
    return pixels, cells


def test_a_sub_rectangle_composes_as_the_whole_image():
    pixels, cells = labels()
    palette = LabelPalette({1: "#ff0000", 2: "#00ff00", 3: "#0000ff"})
    whole = np.zeros(pixels.shape, np.uint32)
    compose_labels(whole, pixels, cells, None, palette)
    assert whole[20, 30] == palette.pixel[2] and whole[155, 120] == palette.pixel[1]
    rng = np.random.default_rng(1)
    for _ in range(50):
        x0, y0 = rng.integers(0, pixels.shape[1]), rng.integers(0, pixels.shape[0])
        x1, y1 = x0 + rng.integers(1, 60), y0 + rng.integers(1, 60)
        part = np.full(pixels.shape, 7, np.uint32)
        compose_labels(part, pixels, cells, (int(x0), int(y0), int(x1), int(y1)), palette)
        ys, xs = slice(y0, min(y1, pixels.shape[0])), slice(x0, min(x1, pixels.shape[1]))
        assert np.array_equal(part[ys, xs], whole[ys, xs]), (x0, y0, x1, y1)
    # the three types differ in pattern: solid brush, outlined 8x8 cells, hatched 16x16 cells
    assert len({int(v) >> 24 for v in whole[10:40, 5:60].ravel()}) == 1
    r, c = map(int, np.argwhere((cells[8] == 3) & (pixels[::8, ::8][: cells[8].shape[0], : cells[8].shape[1]] == 0))[0])
    cell = whole[r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] >> 24
    assert cell[0, 3] > cell[3, 3] > 0
    hatched = whole[48:64, 80:96] >> 24  # cell (3, 5) of the 16x16 grid
    assert len(set(hatched.ravel().tolist())) == 2


def test_regions_per_class_and_type():
    pixels, cells = labels()
    cells[8][:] = 0
    cells[8][20, 2:4] = 3
    regions = label_regions(pixels, cells, label_bounds(pixels, {}))
    got = sorted((r.kind, r.class_id, r.rect) for r in regions)
    assert got == [("block16", 1, (48, 32, 144, 80)), ("block16", 2, (144, 192, 160, 208)), ("block8", 3, (16, 160, 32, 168)),
                   ("pixel", 1, (100, 150, 150, 160)), ("pixel", 2, (5, 10, 60, 40))]
    assert regions[0].area == max(r.area for r in regions)


def test_regions_of_a_large_labelled_area_are_found_at_reduced_resolution():
    pixels = np.zeros((3000, 3000), np.uint8)
    pixels[100:2900, 100:200] = 1
    pixels[100:2900, 2800:2900] = 2
    pixels[1000:1010, 1000:1010] = 1
    regions = label_regions(pixels, {8: np.zeros((375, 375), np.uint8)}, label_bounds(pixels, {}))
    truth = [(1, (100, 100, 200, 2900)), (1, (1000, 1000, 1010, 1010)), (2, (2800, 100, 2900, 2900))]
    got = sorted((r.class_id, r.rect) for r in regions)
    assert [k for k, _ in got] == [k for k, _ in truth]
    for (_, rect), (_, want) in zip(got, truth):  # within the reduction factor (3 here)
        assert all(abs(a - b) <= 3 for a, b in zip(rect, want)), (rect, want)
