"""Automatic-augmentation policies and random erasing for data sets held in memory, batched.

torchvision's RandAugment, TrivialAugmentWide, AugMix and AutoAugment (IMAGENET policy) and
RandomErasing, with their defaults (torchvision.transforms.v2, as its
references/classification/train.py names them: --auto-augment ra|ta_wide|augmix|imagenet,
--random-erase P), as `Augmentation`s (convnet/data/transforms.py): `apply(images, uniform)`
takes float images (N, C, H, W) in [0, 1] and `draws` uniform numbers in [0, 1) per image.
Every random choice torchvision makes per image (op, magnitude bin, sign, whether to apply,
chain depth, mixing weights, rectangle) is read from that image's own row of `uniform`, so an
image's augmentation does not depend on its batch, and equals what torchvision's transform
does when its random draws are those numbers (tests/data/test_policies.py). Each op is
applied once per round to the images that chose it (convnet/data/policy_ops.py), so a batch
costs a few dozen tensor calls, not one transform per image.

A uniform draw u stands for `torch.randint(n, ())` as ⌊u·n⌋, for `torch.rand(()) <= p` as
u <= p; AugMix's Dirichlet(1, …, 1) weights are normalised −log(1 − u) (exponential draws),
its Beta(1, 1) weight of the original image is u itself.

Interpolation is each torchvision class's default: nearest for RandAugment,
TrivialAugmentWide and AutoAugment, bilinear for AugMix (torchvision's reference training
script passes bilinear to all four; the factories take `interpolation`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from convnet.data.policy_ops import GEOMETRIC_OPS, OPS, from_levels, geometric, to_levels
from convnet.data.transforms import Augmentation

# An op's magnitudes by bin, from (number of bins, height, width); None: the op has none.
Magnitudes = Callable[[int, int, int], torch.Tensor] | None


def _linear(end: float) -> Magnitudes:
    return lambda bins, height, width: torch.linspace(0.0, end, bins)


def _posterize_bits(top: int, span: int) -> Magnitudes:
    return lambda bins, height, width: (top - torch.arange(bins) / ((bins - 1) / span)).round()


_SOLARIZE: Magnitudes = lambda bins, height, width: torch.linspace(1.0, 0.0, bins)  # noqa: E731
_SIGNED_COLOUR = ("Brightness", "Color", "Contrast", "Sharpness")

# torchvision's _AUGMENTATION_SPACE of each class, in its order (the order ⌊u·n⌋ indexes):
# op -> (magnitudes, whether the magnitude's sign is drawn).
RAND_AUGMENT_SPACE: dict[str, tuple[Magnitudes, bool]] = {
    "Identity": (None, False),
    "ShearX": (_linear(0.3), True),
    "ShearY": (_linear(0.3), True),
    "TranslateX": (lambda bins, height, width: torch.linspace(0.0, 150 / 331 * width, bins), True),
    "TranslateY": (lambda bins, height, width: torch.linspace(0.0, 150 / 331 * height, bins), True),
    "Rotate": (_linear(30.0), True),
    **{name: (_linear(0.9), True) for name in _SIGNED_COLOUR},
    "Posterize": (_posterize_bits(8, 4), False),
    "Solarize": (_SOLARIZE, False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
}
AUTO_AUGMENT_SPACE = {**RAND_AUGMENT_SPACE, "Invert": (None, False)}
del AUTO_AUGMENT_SPACE["Identity"]
TRIVIAL_AUGMENT_WIDE_SPACE: dict[str, tuple[Magnitudes, bool]] = {
    "Identity": (None, False),
    "ShearX": (_linear(0.99), True),
    "ShearY": (_linear(0.99), True),
    "TranslateX": (_linear(32.0), True),
    "TranslateY": (_linear(32.0), True),
    "Rotate": (_linear(135.0), True),
    **{name: (_linear(0.99), True) for name in _SIGNED_COLOUR},
    "Posterize": (_posterize_bits(8, 6), False),
    "Solarize": (_SOLARIZE, False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
}
AUGMIX_SPACE: dict[str, tuple[Magnitudes, bool]] = {
    "ShearX": (_linear(0.3), True),
    "ShearY": (_linear(0.3), True),
    "TranslateX": (lambda bins, height, width: torch.linspace(0.0, width / 3.0, bins), True),
    "TranslateY": (lambda bins, height, width: torch.linspace(0.0, height / 3.0, bins), True),
    "Rotate": (_linear(30.0), True),
    "Posterize": (_posterize_bits(4, 4), False),
    "Solarize": (_SOLARIZE, False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
    **{name: (_linear(0.9), True) for name in _SIGNED_COLOUR},  # all_ops=True
}

# AutoAugment's IMAGENET policy (Cubuk et al. 2019, appendix; torchvision's order): 25
# sub-policies of two (op, probability, magnitude bin of 10) steps.
IMAGENET_POLICY: tuple[tuple[tuple[str, float, int | None], ...], ...] = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)


@functools.cache
def _table(
    space_name: str, bins: int, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ops, bins) float32 magnitudes (0 where an op has none) and (ops,) signed flags."""
    space = _SPACES[space_name]
    rows = [
        torch.zeros(bins) if magnitudes is None else magnitudes(bins, height, width).float()
        for magnitudes, _ in space.values()
    ]
    return torch.stack(rows), torch.tensor([signed for _, signed in space.values()])


_SPACES = {
    "ra": RAND_AUGMENT_SPACE,
    "ta_wide": TRIVIAL_AUGMENT_WIDE_SPACE,
    "augmix": AUGMIX_SPACE,
    "imagenet": AUTO_AUGMENT_SPACE,
}


def _pick(uniform: torch.Tensor, count: int | torch.Tensor) -> torch.Tensor:
    """⌊u·count⌋: `torch.randint(count, ())` from a uniform draw (in float64: exact, so
    always below count)."""
    return (uniform.double() * count).floor_().long()


def _magnitudes(
    space: str,
    levels: torch.Tensor,
    bins: int,
    op: torch.Tensor,
    bin_index: torch.Tensor,
    sign: torch.Tensor,
) -> torch.Tensor:
    """Each image's magnitude: its op's value at its magnitude bin `bin_index` of `bins`, negated
    where the op is signed and the sign draw is <= 1/2 (torchvision: `if signed and
    torch.rand(()) <= 0.5`), as a float32 (N,) tensor, the values torchvision's tables hold."""
    table, signed = _table(space, bins, levels.shape[-2], levels.shape[-1])
    table, signed = table.to(op.device), signed.to(op.device)
    op = op.clamp(min=0)  # −1 (no op) reads row 0, unused
    magnitude = table[op, bin_index]
    return torch.where(signed[op] & (sign <= 0.5), -magnitude, magnitude)


@functools.cache
def _groups(names: tuple[str, ...]) -> tuple[torch.Tensor, tuple[tuple[str, ...], ...]]:
    """The ops that run as one call: all geometric ones together (one sampling), each other
    op alone, Identity none. Returns each op's group (−1: Identity) and the groups."""
    geometric_ops = tuple(name for name in names if name in GEOMETRIC_OPS)
    others = [(name,) for name in names if name not in GEOMETRIC_OPS and name != "Identity"]
    groups = ((geometric_ops,) if geometric_ops else ()) + tuple(others)
    group_of = [next((g for g, ops in enumerate(groups) if name in ops), -1) for name in names]
    return torch.tensor(group_of), groups


def _apply_ops(
    levels: torch.Tensor,
    names: tuple[str, ...],
    op: torch.Tensor,
    magnitude: torch.Tensor,
    interpolation: str,
) -> None:
    """In place: image i gets op names[op[i]] with magnitude[i] (none where op[i] < 0).
    The images are sorted by op, so each op (all geometric ones together) runs once, on the
    slice of images that chose it."""
    group_of, groups = _groups(names)
    group = torch.where(op >= 0, group_of.to(op.device)[op.clamp(min=0)], -1)
    counts = torch.bincount(group + 1, minlength=len(groups) + 1).tolist()
    order = torch.argsort(group, stable=True)[counts[0] :]  # without Identity and no op
    if len(order) == 0:
        return
    by_op, op, magnitude = levels.index_select(0, order), op[order], magnitude[order]
    start = 0
    for ops, count in zip(groups, counts[1:], strict=True):
        chunk = slice(start, start + count)
        if count and ops[0] in GEOMETRIC_OPS:
            chosen = [names[index] for index in op[chunk].tolist()]
            by_op[chunk] = geometric(by_op[chunk], chosen, magnitude[chunk], interpolation)
        elif count:
            by_op[chunk] = OPS[ops[0]](by_op[chunk], magnitude[chunk])
        start += count
    levels.index_copy_(0, order, by_op)


def _augmentation(draws: int, description: str, run) -> Augmentation:
    """An Augmentation whose `run(levels, uniform)` works in levels (policy_ops.py)."""

    def apply(images: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        levels = to_levels(images)
        return from_levels(run(levels, uniform.to(levels.device)), images.dtype)

    return Augmentation(draws, apply, description)


def rand_augment(
    num_ops: int = 2,
    magnitude: int = 9,
    num_magnitude_bins: int = 31,
    interpolation: str = "nearest",
) -> Augmentation:
    """RandAugment (Cubuk et al. 2020; torchvision's RandAugment): `num_ops` ops in a row, each
    any of 14 (Identity included) with equal chance, at magnitude bin `magnitude` of
    `num_magnitude_bins`, negated with probability 1/2 where signed. Draws per image: op and
    sign for each of the `num_ops` ops."""
    names = tuple(RAND_AUGMENT_SPACE)

    def run(levels: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        for step in range(num_ops):
            op = _pick(uniform[:, 2 * step], len(names))
            bin_index = torch.full_like(op, magnitude)
            sign = uniform[:, 2 * step + 1]
            value = _magnitudes("ra", levels, num_magnitude_bins, op, bin_index, sign)
            _apply_ops(levels, names, op, value, interpolation)
        return levels

    description = f"RandAugment, {num_ops} ops at magnitude {magnitude}/{num_magnitude_bins - 1}"
    return _augmentation(2 * num_ops, description + " (Cubuk et al. 2020)", run)


def trivial_augment_wide(
    num_magnitude_bins: int = 31, interpolation: str = "nearest"
) -> Augmentation:
    """TrivialAugment Wide (Müller & Hutter 2021; torchvision's TrivialAugmentWide): one op of
    14 with equal chance, at a magnitude bin of `num_magnitude_bins` with equal chance, over
    the wide ranges (shear 0.99, translate 32 px whatever the image size, rotate 135°, colour
    0.99, posterize down to 2 bits). Draws per image: op, magnitude bin, sign."""
    names = tuple(TRIVIAL_AUGMENT_WIDE_SPACE)

    def run(levels: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        op = _pick(uniform[:, 0], len(names))
        bin_index = _pick(uniform[:, 1], num_magnitude_bins)
        value = _magnitudes("ta_wide", levels, num_magnitude_bins, op, bin_index, uniform[:, 2])
        _apply_ops(levels, names, op, value, interpolation)
        return levels

    return _augmentation(3, "TrivialAugment Wide (Müller & Hutter 2021)", run)


def auto_augment(interpolation: str = "nearest") -> Augmentation:
    """AutoAugment's IMAGENET policy (Cubuk et al. 2019; torchvision's AutoAugment): one of 25
    sub-policies with equal chance, each of its two steps applied with its own probability, at
    its magnitude bin of 10. Draws per image: sub-policy, then whether and sign for each step."""
    names = tuple(AUTO_AUGMENT_SPACE)
    steps = [
        (
            torch.tensor([names.index(name) for name, _, _ in policy]),
            torch.tensor([probability for _, probability, _ in policy]),
            torch.tensor([bin_index or 0 for _, _, bin_index in policy]),
        )
        for policy in zip(*IMAGENET_POLICY, strict=True)  # step by step across the 25 sub-policies
    ]

    def run(levels: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        policy = _pick(uniform[:, 0], len(IMAGENET_POLICY))
        for step, step_table in enumerate(steps):
            ops, probabilities, bin_index = (
                column.to(policy.device)[policy] for column in step_table
            )
            # torchvision: `if not torch.rand(()) <= probability: continue` (float32 compare)
            op = torch.where(uniform[:, 1 + 2 * step] <= probabilities, ops, -1)
            value = _magnitudes("imagenet", levels, 10, op, bin_index, uniform[:, 2 + 2 * step])
            _apply_ops(levels, names, op, value, interpolation)
        return levels

    return _augmentation(5, "AutoAugment, ImageNet policy (Cubuk et al. 2019)", run)


def augmix_weights(uniform: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """AugMix's weights from uniform draws (N, 1 + width): (N, 2) Beta(1, 1) weights of the
    original and the mixture, as torchvision's Dirichlet([1, 1]) `m`, and (N, width)
    Dirichlet(1, …, 1) weights of the chains, each −log(1 − u) over their sum."""
    original = uniform[:, 0].float()
    beta = torch.stack([original, 1.0 - original], dim=1)
    exponential = -torch.log1p(-uniform[:, 1 : 1 + width].float())
    dirichlet = exponential / exponential.sum(1, keepdim=True).clamp_(min=1e-30)
    return beta, dirichlet


def augmix(
    severity: int = 3,
    mixture_width: int = 3,
    chain_depth: int = -1,
    interpolation: str = "bilinear",
) -> Augmentation:
    """AugMix (Hendrycks et al. 2020; torchvision's AugMix with alpha=1, all_ops=True):
    `mixture_width` chains of 1–3 ops (or `chain_depth`) drawn from 13, each at a magnitude
    bin below `severity` of 10, mixed with Dirichlet(1, …, 1) weights, and the mixture blended
    with the original by a Beta(1, 1) weight, rounded down to a level as torchvision's uint8
    result. Draws per image: Beta, Dirichlet (width), then per chain its depth and three
    (op, bin, sign). The chains run as one batch of width × N images."""
    names = tuple(AUGMIX_SPACE)
    depth_max = chain_depth if chain_depth > 0 else 3
    per_chain = 1 + 3 * depth_max

    def run(levels: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        count = len(levels)
        beta, dirichlet = augmix_weights(uniform, mixture_width)
        weights = dirichlet * beta[:, 1:]  # torchvision's combined_weights
        chains = uniform[:, 1 + mixture_width :].reshape(count, mixture_width, per_chain)
        chains = chains.transpose(0, 1).reshape(mixture_width * count, per_chain)  # chain-major
        if chain_depth > 0:
            depth = torch.full((len(chains),), chain_depth, device=levels.device)
        else:
            depth = 1 + _pick(chains[:, 0], 3)
        augmented = levels.repeat(mixture_width, 1, 1, 1)
        for step in range(depth_max):
            draws = chains[:, 1 + 3 * step : 4 + 3 * step]
            op = torch.where(step < depth, _pick(draws[:, 0], len(names)), -1)
            value = _magnitudes("augmix", levels, 10, op, _pick(draws[:, 1], severity), draws[:, 2])
            _apply_ops(augmented, names, op, value, interpolation)
        mix = beta[:, 0].view(-1, 1, 1, 1) * levels
        for chain in range(mixture_width):
            mix.add_(weights[:, chain].view(-1, 1, 1, 1) * augmented.chunk(mixture_width)[chain])
        return mix.floor_()

    description = f"AugMix, severity {severity}, width {mixture_width} (Hendrycks et al. 2020)"
    return _augmentation(1 + mixture_width * (1 + per_chain), description, run)


def random_erasing(
    probability: float,
    fill: float | tuple[float, ...],
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    attempts: int = 10,
) -> Augmentation:
    """Random Erasing (Zhong et al. 2020; torchvision's RandomErasing(p, scale, ratio, value)):
    with `probability`, one rectangle of `scale` of the image's area and aspect ratio (height
    over width) in `ratio`, log-uniform, set to `fill` (one value or one per channel).

    As torchvision, up to `attempts` rectangles are drawn and the first that fits inside the
    image is erased; if none fits, the image stays. The caller passes fill = the
    normalization's mean, so erasing before normalizing equals torchvision's erasing with
    value 0 after it. Draws per image: apply, then (area, log aspect) per attempt, then the
    top and left of the rectangle."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"the probability of random erasing is in [0, 1], not {probability}")
    log_ratio = torch.log(torch.tensor(ratio))  # float32, as torchvision's _log_ratio

    def apply(images: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        count, channels, height, width = images.shape
        uniform = uniform.to(images.device)
        tries = uniform[:, 1 : 1 + 2 * attempts].float().view(count, attempts, 2)
        # torchvision's torch.empty(1).uniform_(a, b).item(): a + (b − a)·u in float32, used
        # in float64; the aspect ratio is exp of one, in float32 (float64 rounded to float32)
        area = height * width * (tries[..., 0] * (scale[1] - scale[0]) + scale[0]).double()
        low, high = log_ratio.tolist()
        aspect = torch.exp((tries[..., 1] * (high - low) + low).double()).float().double()
        tall = torch.round(torch.sqrt(area * aspect))
        wide = torch.round(torch.sqrt(area / aspect))
        fits = (tall < height) & (wide < width)
        first = fits.int().argmax(1, keepdim=True)  # the first rectangle that fits
        tall, wide = tall.gather(1, first)[:, 0], wide.gather(1, first)[:, 0]
        top = _pick(uniform[:, -2], height - tall + 1)
        left = _pick(uniform[:, -1], width - wide + 1)
        erase = (uniform[:, 0] < probability) & fits.any(1)  # torchvision: rand(1) >= p: keep
        rows = torch.arange(height, device=images.device)
        columns = torch.arange(width, device=images.device)
        inside_rows = (rows >= top[:, None]) & (rows < (top + tall)[:, None])
        inside_columns = (columns >= left[:, None]) & (columns < (left + wide)[:, None])
        inside = erase[:, None, None] & inside_rows[:, :, None] & inside_columns[:, None, :]
        value = torch.tensor(fill, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
        return torch.where(inside[:, None], value, images)

    description = f"random erasing with probability {probability} (Zhong et al. 2020)"
    return Augmentation(1 + 2 * attempts + 2, apply, description)


# --auto-augment NAME: torchvision's references/classification names, each with its defaults.
POLICIES: dict[str, Augmentation] = {
    "ra": rand_augment(),
    "ta_wide": trivial_augment_wide(),
    "augmix": augmix(),
    "imagenet": auto_augment(),
}
