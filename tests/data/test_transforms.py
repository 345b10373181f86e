"""Transforms: CIFAR-10's crop-and-flip augmentation, per-channel normalization."""

from __future__ import annotations

import torch

from convnet.data.transforms import random_crop_flip


def test_crop_and_flip_statistics():
    """Each image's crop offset is −4 … +4 pixels in each direction, every offset equally
    likely, the padding is 0, and half the images are mirrored; every output equals the crop
    of the zero-padded image at the offset it shows (decoded from coordinate-coded pixels)."""
    count, side, padding = 9000, 32, 4
    rows = torch.arange(1, side + 1, dtype=torch.float32)[:, None].expand(side, side)
    columns = rows.T
    images = torch.stack([rows, columns, torch.ones(side, side)])[None].expand(count, -1, -1, -1)
    uniform = torch.rand(count, 3, generator=torch.Generator().manual_seed(0))
    out = random_crop_flip(images, uniform, padding)
    assert out.shape == images.shape
    centre = side // 2
    dy = out[:, 0, centre, centre].long() - (centre + 1)
    flipped = out[:, 1, centre, centre + 1] < out[:, 1, centre, centre]
    dx = out[:, 1, centre, centre].long() - torch.where(flipped, side - centre, centre + 1)
    padded = torch.nn.functional.pad(images[0], (padding,) * 4)
    for index in range(0, count, 97):  # the slow way, one image at a time
        top, left = padding + dy[index], padding + dx[index]
        crop = padded[:, top : top + side, left : left + side]
        expected = crop.flip(-1) if flipped[index] else crop
        assert torch.equal(out[index], expected), index
    for offsets in (dy, dx):
        counts = torch.bincount(offsets + padding, minlength=2 * padding + 1)
        assert len(counts) == 2 * padding + 1  # never beyond ±4
        expected, spread = count / 9, 4 * (count * (1 / 9) * (8 / 9)) ** 0.5
        assert ((counts - expected).abs() < spread).all(), counts.tolist()
    assert abs(flipped.float().mean().item() - 0.5) < 4 * (0.25 / count) ** 0.5
    # the padding shows as zeros: an image shifted by 4 has 4 rows of background
    assert (out[:, 2].sum(dim=(1, 2)) == (side - dy.abs()) * (side - dx.abs())).all()


def test_per_channel_normalization():
    from convnet.data.transforms import normalize
    from convnet.models.imagenet import IMAGENET_NORMALIZATION

    images = torch.ones(2, 3, 4, 4)
    result = normalize(images, *IMAGENET_NORMALIZATION)
    mean, std = IMAGENET_NORMALIZATION
    for channel in range(3):
        assert result[:, channel].allclose(torch.tensor((1 - mean[channel]) / std[channel]))
