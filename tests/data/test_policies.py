"""The batched augmentation policies against torchvision, which defines them.

Each op on a batch, each image with its own magnitude, equals torchvision's v2 op applied to
that image on its own, for every magnitude torchvision's policies can use. Each policy,
with torchvision's random draws forced to the ones our policy reads from `uniform`, equals
torchvision's transform image by image. Both on uint8 images: the comparisons are exact."""

from __future__ import annotations

import math
import types

import pytest
import torch
import torchvision.transforms.v2._augment as tv_augment
import torchvision.transforms.v2._auto_augment as tv_auto_augment
import torchvision.transforms.v2._transform as tv_transform
from torchvision.transforms.v2 import (
    AugMix,
    AutoAugment,
    AutoAugmentPolicy,
    InterpolationMode,
    RandAugment,
    RandomErasing,
    TrivialAugmentWide,
)

from convnet.data import policies
from convnet.data.policy_ops import GEOMETRIC_OPS, OPS, geometric

TORCHVISION = {
    "ra": RandAugment,
    "ta_wide": TrivialAugmentWide,
    "augmix": AugMix,
    "imagenet": lambda **options: AutoAugment(AutoAugmentPolicy.IMAGENET, **options),
}
FACTORIES = {
    "ra": policies.rand_augment,
    "ta_wide": policies.trivial_augment_wide,
    "augmix": policies.augmix,
    "imagenet": policies.auto_augment,
}
# The magnitude bins each torchvision class asks its space for.
BINS = {"ra": 31, "ta_wide": 31, "augmix": 10, "imagenet": 10}


def uint8_images(count: int, channels: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Photo-like uint8 images (smooth shapes plus noise over the full range); 1-channel ones
    digit-like, with MNIST's 2-pixel black border. The first image is flat, the second black:
    AutoContrast and Equalize leave those as they are."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 256, (count, channels, 6, 6), generator=generator).float()
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    noise = torch.randint(-24, 25, smooth.shape, generator=generator)
    images = (smooth + noise).round().clamp(0, 255).to(torch.uint8)
    if channels == 1:
        images[..., :2, :], images[..., -2:, :] = 0, 0
        images[..., :2], images[..., -2:] = 0, 0
    images[0], images[1] = 91, 0
    return images


def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255  # as convnet.data.transforms.to_model_input


def as_uint8(images: torch.Tensor) -> torch.Tensor:
    assert images.dtype == torch.float32
    return (images * 255).round().to(torch.uint8)


# Ops ---------------------------------------------------------------------------------------


def torchvision_magnitudes(name: str, height: int, width: int) -> list[float]:
    """Every magnitude torchvision's four policies can give op `name` on this image size,
    both signs where signed; [0.0] where it takes none."""
    values = {0.0}
    for policy, bins in BINS.items():
        space = TORCHVISION[policy]()._AUGMENTATION_SPACE
        if name in space:
            magnitudes, signed = space[name]
            table = magnitudes(bins, height, width)
            if table is not None:
                values |= {
                    float(value) * sign for value in table for sign in (1, -1 if signed else 1)
                }
    return sorted(values)


def torchvision_op(name: str, image: torch.Tensor, magnitude: float, interpolation: str):
    """torchvision's op as its policies apply it (fill None: zeros outside the image)."""
    reference = AutoAugment()
    return reference._apply_image_or_video_transform(
        image, name, magnitude, interpolation=InterpolationMode(interpolation), fill=reference._fill
    )


OP_CASES = [
    (name, channels, size, interpolation)
    for name in OPS
    for channels, size in ((1, 32), (3, 32), (1, 28))
    for interpolation in (("nearest", "bilinear") if name in GEOMETRIC_OPS else ("nearest",))
]


@pytest.mark.parametrize(("name", "channels", "size", "interpolation"), OP_CASES)
def test_op_equals_torchvision_image_by_image(name, channels, size, interpolation):
    magnitudes = torchvision_magnitudes(name, size, size)
    images = uint8_images(max(len(magnitudes), 8), channels, size, seed=len(name))
    magnitude = torch.tensor([magnitudes[i % len(magnitudes)] for i in range(len(images))])
    extra = {"interpolation": interpolation} if name in GEOMETRIC_OPS else {}
    batched = OPS[name](images.float(), magnitude, **extra)
    expected = torch.stack(
        [
            torchvision_op(name, image, float(value), interpolation)
            for image, value in zip(images, magnitude, strict=True)
        ]
    )
    assert batched.dtype == torch.float32 and batched.shape == images.shape
    differ = (batched != expected.float()).flatten(1).any(1)
    assert not differ.any(), f"{name}: images differ at magnitudes {magnitude[differ].tolist()}"


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_geometric_ops_mixed_in_one_call(interpolation):
    """A policy samples all its geometric ops of a round at once, each image its own."""
    names = list(GEOMETRIC_OPS)
    generator = torch.Generator().manual_seed(3)
    images = uint8_images(80, 3, seed=4)
    ops = [names[i] for i in torch.randint(5, (80,), generator=generator).tolist()]
    values = []
    for op in ops:
        choices = torchvision_magnitudes(op, 32, 32)
        values.append(choices[int(torch.randint(len(choices), (), generator=generator))])
    magnitude = torch.tensor(values)
    batched = geometric(images.float(), ops, magnitude, interpolation)
    for image, op, value, result in zip(images, ops, magnitude, batched, strict=True):
        expected = torchvision_op(op, image, float(value), interpolation)
        assert torch.equal(result, expected.float()), (op, float(value))


def test_colour_leaves_grey_images_alone():
    """torchvision (like PIL) leaves a 1-channel image's saturation as it is."""
    images = uint8_images(4, 1).float()
    assert torch.equal(OPS["Color"](images, torch.tensor([0.9, -0.9, 0.5, -0.99])), images)


def test_ops_change_images():
    """A guard against ops that do nothing: each op (but Identity) changes most images at a
    middle magnitude, on images of levels 30…183 (AutoContrast leaves a full range as it is)."""
    images = (uint8_images(16, 3).float() * 0.6 + 30).round()
    for name, op in OPS.items():
        magnitude = torch.full((16,), 4.0 if name in ("Posterize",) else 0.5)
        if name in ("TranslateX", "TranslateY", "Rotate"):
            magnitude = torch.full((16,), 9.0)
        changed = (op(images, magnitude) != images).flatten(1).any(1)[2:]  # not flat/black
        assert changed.all() != (name == "Identity"), name


# Policies ----------------------------------------------------------------------------------


def test_spaces_and_imagenet_policy_are_torchvision_s():
    """The op lists (order matters: ⌊u·n⌋ indexes them), signs and magnitude tables."""
    ours = {
        "ra": policies.RAND_AUGMENT_SPACE,
        "ta_wide": policies.TRIVIAL_AUGMENT_WIDE_SPACE,
        "augmix": policies.AUGMIX_SPACE,
        "imagenet": policies.AUTO_AUGMENT_SPACE,
    }
    for policy, space in ours.items():
        theirs = TORCHVISION[policy]()._AUGMENTATION_SPACE
        assert list(space) == list(theirs), policy
        for name, (magnitudes, signed) in space.items():
            their_magnitudes, their_signed = theirs[name]
            assert signed == their_signed, (policy, name)
            for height, width in ((32, 32), (28, 28), (24, 40)):
                table = their_magnitudes(BINS[policy], height, width)
                mine = None if magnitudes is None else magnitudes(BINS[policy], height, width)
                assert (mine is None) == (table is None), (policy, name)
                if table is not None:
                    assert torch.equal(mine.float(), table.float()), (policy, name, height)
    assert list(policies.IMAGENET_POLICY) == AutoAugment(AutoAugmentPolicy.IMAGENET)._policies


class ScriptedTorch(types.SimpleNamespace):
    """Stands in for `torch` in a torchvision module: its random draws are scripted, ⌊u·n⌋ for
    randint and u for rand, the way our policies read their uniforms. Everything else is
    torch's own."""

    def __init__(self):
        super().__init__(draws=[], areas=[], positions=[])

    def __getattr__(self, name):
        return getattr(torch, name)

    def rand(self, *size, **options):
        return torch.tensor(self.draws.pop(0), dtype=torch.float32).reshape(*size)

    def randint(self, *arguments, size=None, low=0, high=None):
        if high is None:
            low, high = (0, arguments[0]) if len(arguments) < 2 or arguments[1] == () else arguments
        queue = self.positions if self.positions else self.draws
        value = low + math.floor(float(queue.pop(0)) * (high - low))
        return torch.tensor(value) if size in (None, ()) else torch.full(size, value)

    def empty(self, *size, **options):  # RandomErasing's torch.empty(1).uniform_(a, b)
        scripted = self

        class Uniform:
            def uniform_(self, low, high):
                draw = torch.tensor([scripted.areas.pop(0)], dtype=torch.float32)
                return draw * (float(high) - float(low)) + float(low)

        return Uniform()


@pytest.fixture
def scripted(monkeypatch):
    fake = ScriptedTorch()
    for module in (tv_auto_augment, tv_augment, tv_transform):
        monkeypatch.setattr(module, "torch", fake)
    return fake


def torchvision_draws(policy: str, row: torch.Tensor, transform) -> list[float]:
    """The draws torchvision makes for one image, in the order it makes them, taken from the
    row of uniforms where our policy reads them. torchvision skips a draw it has no use for
    (a sign of an unsigned op, a step not applied): the row keeps its place, the script
    leaves it out."""
    row, draws = row.tolist(), []
    space = transform._AUGMENTATION_SPACE

    def op(names, choice_draw, bin_draw=None, sign_draw=None):
        name = list(names)[math.floor(choice_draw * len(names))]
        draws.append(choice_draw)
        magnitudes, signed = space[name]
        if magnitudes(10, 32, 32) is not None:
            if bin_draw is not None:
                draws.append(bin_draw)
            if signed:
                draws.append(sign_draw)

    if policy == "ra":
        for step in range(2):
            op(space, row[2 * step], sign_draw=row[2 * step + 1])
    elif policy == "ta_wide":
        op(space, row[0], row[1], row[2])
    elif policy == "imagenet":
        draws.append(row[0])
        sub_policy = transform._policies[math.floor(row[0] * len(transform._policies))]
        for step, (name, probability, _) in enumerate(sub_policy):
            draws.append(row[1 + 2 * step])
            magnitudes, signed = space[name]
            applied = torch.tensor(row[1 + 2 * step]) <= probability  # float32, as torchvision
            if applied and signed and magnitudes(10, 32, 32) is not None:
                draws.append(row[2 + 2 * step])
    else:  # augmix: Dirichlet weights aside, per chain its depth and its ops
        for chain in range(3):
            base = 4 + 10 * chain
            draws.append(row[base])
            for step in range(1 + math.floor(row[base] * 3)):
                op(space, *row[base + 1 + 3 * step : base + 4 + 3 * step])
    return draws


def edge_draws(count: int, draws: int, seed: int) -> torch.Tensor:
    """Uniform draws, some of them on the edges of torchvision's decisions: 0, the largest
    float32 below 1, 1/2 (a sign), AutoAugment's probabilities as float32."""
    generator = torch.Generator().manual_seed(seed)
    uniform = torch.rand(count, draws, generator=generator)
    edges = torch.tensor([0.0, 1 - 2**-24, 0.5, 0.4, 0.6, 0.8, 0.2])
    special = torch.rand(count, draws, generator=generator) < 0.15
    picks = torch.randint(len(edges), (count, draws), generator=generator)
    return torch.where(special, edges[picks], uniform)


POLICY_CASES = [
    (policy, channels, interpolation)
    for policy in TORCHVISION
    for channels in (1, 3)
    for interpolation in ("nearest", "bilinear")
]


@pytest.mark.parametrize(("policy", "channels", "interpolation"), POLICY_CASES)
def test_policy_equals_torchvision_with_the_same_draws(scripted, policy, channels, interpolation):
    augmentation = FACTORIES[policy](interpolation=interpolation)
    images = uint8_images(120, channels, seed=channels)
    uniform = edge_draws(len(images), augmentation.draws, seed=len(policy))
    result = augmentation.apply(as_float(images), uniform)
    transform = TORCHVISION[policy](interpolation=InterpolationMode(interpolation))
    if policy == "augmix":
        beta, dirichlet = policies.augmix_weights(uniform, 3)
    for index, (image, row) in enumerate(zip(images, uniform, strict=True)):
        scripted.draws = torchvision_draws(policy, row, transform)
        if policy == "augmix":
            weights = iter([beta[index : index + 1], dirichlet[index : index + 1]])
            transform._sample_dirichlet = lambda parameters, weights=weights: next(weights)
        expected = transform(image)
        assert not scripted.draws, "torchvision made fewer draws than scripted"
        assert torch.equal(as_uint8(result[index]), expected), f"image {index}, draws {row}"


def test_random_erasing_equals_torchvision_with_the_same_draws(scripted):
    fill = (0.49, 0.48, 0.45)
    augmentation = policies.random_erasing(0.7, fill, scale=(0.4, 1.0))  # some give up
    images = as_float(uint8_images(300, 3))
    uniform = edge_draws(len(images), augmentation.draws, seed=5)
    result = augmentation.apply(images, uniform)
    transform = RandomErasing(p=0.7, scale=(0.4, 1.0), value=fill)
    gave_up = 0
    for index, (image, row) in enumerate(zip(images, uniform, strict=True)):
        scripted.draws, scripted.areas = [float(row[0])], row[1:21].tolist()
        scripted.positions = row[21:].tolist()
        expected = transform(image)
        gave_up += float(row[0]) < 0.7 and not scripted.areas and len(scripted.positions) == 2
        assert torch.equal(result[index], expected), f"image {index}, draws {row}"
    assert gave_up > 0, "no image tried all ten rectangles: the give-up case went untested"
    with pytest.raises(ValueError, match="probability"):
        policies.random_erasing(1.5, 0.0)


# Per-image draws, range, statistics ----------------------------------------------------------

ALL = [*policies.POLICIES, "erase"]


def augmentation_named(name: str):
    return policies.random_erasing(0.5, 0.5) if name == "erase" else policies.POLICIES[name]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("channels", [1, 3])
def test_an_image_s_result_does_not_depend_on_its_batch(name, channels):
    """Shuffled, and cut into batches of 1 to 41 images, each image comes out the same."""
    augmentation = augmentation_named(name)
    images = as_float(uint8_images(96, channels, seed=7))
    uniform = torch.rand(96, augmentation.draws, generator=torch.Generator().manual_seed(1))
    whole = augmentation.apply(images, uniform)
    order = torch.randperm(96, generator=torch.Generator().manual_seed(2))
    assert torch.equal(augmentation.apply(images[order], uniform[order]), whole[order])
    for batch in order.split([1, 1, 2, 3, 5, 8, 13, 22, 41]):
        assert torch.equal(augmentation.apply(images[batch], uniform[batch]), whole[batch])


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_keeps_shape_dtype_and_range(name, dtype):
    augmentation = augmentation_named(name)
    images = as_float(uint8_images(64, 3, seed=3)).to(dtype)
    uniform = torch.rand(64, augmentation.draws, generator=torch.Generator().manual_seed(4))
    result = augmentation.apply(images, uniform)
    assert result.shape == images.shape and result.dtype == dtype
    assert result.min() >= 0 and result.max() <= 1
    assert torch.equal(images, as_float(uint8_images(64, 3, seed=3)).to(dtype)), "input modified"


def changed_fraction(augmentation, images: torch.Tensor, seed: int = 0) -> float:
    uniform = torch.rand(
        len(images), augmentation.draws, generator=torch.Generator().manual_seed(seed)
    )
    result = augmentation.apply(images, uniform)
    return (result != images).flatten(1).any(1).float().mean().item()


@pytest.fixture(scope="module")
def many_images():
    return as_float(uint8_images(2000, 3, seed=11)[2:])  # not the flat and black ones


@pytest.mark.slow
def test_how_often_policies_change_images(many_images):
    """RandAugment changes nearly every image (two Identities: 1 in 196), TrivialAugment
    all but its Identity's 1 in 14 (and a few no-op magnitudes), AugMix every one."""
    assert changed_fraction(policies.POLICIES["ra"], many_images) > 0.97
    assert 0.85 < changed_fraction(policies.POLICIES["ta_wide"], many_images) < 0.96
    assert changed_fraction(policies.POLICIES["augmix"], many_images) > 0.99
    # AutoAugment: a step applies with its probability, so an image stays unchanged with
    # probability mean over sub-policies of (1 − p1)(1 − p2), at least.
    unchanged = sum((1 - a[1]) * (1 - b[1]) for a, b in policies.IMAGENET_POLICY) / 25
    fraction = changed_fraction(policies.POLICIES["imagenet"], many_images)
    assert 1 - unchanged - 0.1 < fraction < 1 - unchanged + 0.035


@pytest.mark.parametrize("probability", [0.0, 0.25, 0.5, 1.0])
def test_random_erasing_erases_about_p_of_the_images(many_images, probability):
    fraction = changed_fraction(policies.random_erasing(probability, 0.5), many_images)
    spread = 4 * math.sqrt(probability * (1 - probability) / len(many_images)) + 0.01
    assert abs(fraction - probability) <= spread


def test_random_erasing_rectangles_have_torchvision_s_areas(many_images):
    erasing = policies.random_erasing(1.0, (0.5, 0.5, 0.5))
    uniform = torch.rand(
        len(many_images), erasing.draws, generator=torch.Generator().manual_seed(9)
    )
    erased = (erasing.apply(many_images, uniform) != many_images).any(1)  # (N, H, W)
    hit = erased.flatten(1).any(1)
    area = erased.flatten(1).float().mean(1)[hit]
    assert area.min() >= 0.012 and area.max() <= 0.36 and 0.1 < area.mean() < 0.2
    # one rectangle: as many pixels as its rows times its columns
    rows, columns = erased.any(2).sum(1), erased.any(1).sum(1)
    assert torch.equal((rows * columns)[hit], erased.flatten(1).sum(1)[hit]), "not a rectangle"


def test_augmix_weights_are_beta_and_dirichlet():
    uniform = torch.rand(20000, 4, generator=torch.Generator().manual_seed(0))
    beta, dirichlet = policies.augmix_weights(uniform, 3)
    assert torch.allclose(beta.sum(1), torch.ones(20000)) and torch.allclose(
        dirichlet.sum(1), torch.ones(20000)
    )
    assert abs(beta[:, 0].mean() - 0.5) < 0.01 and abs(beta[:, 0].var() - 1 / 12) < 0.005
    # Dirichlet(1, 1, 1): each weight has mean 1/3 and variance 1/18, marginally Beta(1, 2)
    assert torch.allclose(dirichlet.mean(0), torch.full((3,), 1 / 3), atol=0.01)
    assert torch.allclose(dirichlet.var(0), torch.full((3,), 1 / 18), atol=0.004)
