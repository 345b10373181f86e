"""Test-time distortions: exact translations, identities, rotation direction, determinism."""

import pytest
import torch

from convnet.data.distortions import DISTORTIONS, elastic, gaussian_noise, rotate, scale, translate


def dot(y: int, x: int, size: int = 16) -> torch.Tensor:
    image = torch.zeros(1, 1, size, size)
    image[0, 0, y, x] = 1.0
    return image


@pytest.mark.parametrize("dx,dy", [(3, 0), (-2, 0), (0, 4), (0, -1), (2, -3), (-5, 5)])
def test_translate_moves_a_pixel_by_exactly_k(dx, dy):
    moved = translate(dot(7, 8), dx, dy)
    assert moved.sum().item() == 1.0
    assert moved[0, 0, 7 + dy, 8 + dx].item() == 1.0


def test_translate_drops_what_leaves_the_frame_and_copies():
    image = dot(3, 1)
    assert translate(image, -2, 0).sum().item() == 0.0
    assert image.sum().item() == 1.0  # the input is untouched


def test_rotation_by_zero_scale_one_noise_zero_elastic_zero_are_identities():
    images = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(rotate(images, 0.0), images)
    torch.testing.assert_close(scale(images, 1.0), images)
    torch.testing.assert_close(gaussian_noise(images, 0.0), images)
    torch.testing.assert_close(elastic(images, 0.0), images)


@pytest.mark.parametrize("name", list(DISTORTIONS))
def test_each_sweep_contains_its_identity(name):
    distortion = DISTORTIONS[name]
    images = torch.rand(2, 1, 32, 32)
    assert distortion.identity in distortion.levels
    torch.testing.assert_close(distortion.apply(images, distortion.identity), images)
    changed = distortion.apply(images, distortion.levels[-1])
    assert changed.shape == images.shape and not torch.equal(changed, images)


def test_rotation_turns_clockwise_and_keeps_the_centre():
    turned = rotate(dot(1, 8, size=17), 90.0)  # a dot above the centre (8, 8)…
    assert divmod(int(turned.flatten().argmax()), 17) == (8, 15)  # …ends up right of it


def test_random_distortions_are_deterministic_and_in_range():
    images = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(
        gaussian_noise(images, 0.3, seed=5), gaussian_noise(images, 0.3, seed=5)
    )
    torch.testing.assert_close(elastic(images, 34.0, seed=5), elastic(images, 34.0, seed=5))
    assert not torch.equal(elastic(images, 34.0, seed=5), elastic(images, 34.0, seed=6))
    noisy = gaussian_noise(images, 0.5)
    assert noisy.min() >= 0 and noisy.max() <= 1
