"""What the ImageNet model families share: the challenge record, normalization, and the
wrapping of torchvision's builders into registry entries.

torchvision defines AlexNet, VGG, GoogLeNet and ResNet; we do not rewrite them. Each entry
calls torchvision's builder and gives the result `forward_features` / `forward_head` by
switching it to a subclass that only adds methods, so its state_dict keys stay
torchvision's and torchvision's weight files load unchanged.

torchvision is imported when one of these models is first built, not when the registry
is: `import torchvision` costs about 1.1 s and 165 MB per process (it imports
torch._dynamo), which LeNet-5 and the compact models never need.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from torch import nn

from convnet.models.registry import register_model

# torchvision's ImageNet preprocessing (ImageClassification preset): per-channel RGB
# mean and std of the ImageNet training images.
IMAGENET_NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMAGENET_INPUT = (3, 224, 224)

RUSSAKOVSKY_2015 = (
    "Russakovsky et al. ImageNet Large Scale Visual Recognition Challenge. IJCV 115:211–252, "
    "2015 (Table 7 / Fig. 9: winners 2010–2014; §6.4: human error 5.1%)"
)


@dataclass(frozen=True)
class ChallengeEntry:
    """A network's ILSVRC classification entry: year, top-5 test error, and where it is published."""

    year: int
    top5_error: float  # percent, on the ILSVRC test set, as the team submitted it
    entry: str  # the team / submission the figure belongs to
    source: str  # where the figure is published


# The winners of ILSVRC classification by year (the lecture's chart), with the depth of
# the winning network: 2010–2011 were not deep networks.
@dataclass(frozen=True)
class Winner:
    year: int
    network: str
    depth: int | None  # weight layers; None for the pre-CNN entries
    top5_error: float
    source: str


ILSVRC_WINNERS: tuple[Winner, ...] = (
    Winner(2010, "NEC-UIUC", None, 28.2, RUSSAKOVSKY_2015),
    Winner(2011, "XRCE", None, 25.8, RUSSAKOVSKY_2015),
    Winner(2012, "AlexNet", 8, 16.4, RUSSAKOVSKY_2015),
    Winner(2013, "Clarifai", 8, 11.7, RUSSAKOVSKY_2015),
    Winner(2014, "GoogLeNet", 22, 6.7, RUSSAKOVSKY_2015),
    Winner(2015, "ResNet", 152, 3.57, "He et al. 2016, Table 5 (ILSVRC 2015 test set)"),
    Winner(2016, "Trimps-Soushen", None, 2.99, "ILSVRC 2016 results (image-net.org), ensemble"),
    Winner(2017, "SENet", 154, 2.25, "Hu et al. 2018 (CVPR), §7: 2.251% top-5, ILSVRC 2017"),
)
# One trained annotator's top-5 error on 1,500 test images (Karpathy; Russakovsky 2015 §6.4).
HUMAN_TOP5_ERROR = 5.1

# Registry name -> its family's challenge entry, filled by `register_torchvision`.
CHALLENGE_ENTRIES: dict[str, ChallengeEntry] = {}


class ImageNetModel(nn.Module):
    """Mixin of the wrapped torchvision classifiers (each family adds forward_features and
    forward_head, whose composition is torchvision's forward). A family's mixin is named
    as torchvision's class it extends."""

    def prepare_state_dict(self, tensors: dict) -> dict:
        """Adapt a weights file's tensors to this model (only GoogLeNet has to)."""
        return tensors


def replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Make the first convolution read `in_channels` maps (e.g. 1 for MNIST), same name."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels == in_channels:
                return
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            replacement = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                module.groups,
                module.bias is not None,
            )
            setattr(parent, name.rpartition(".")[2], replacement)
            return


@functools.cache
def wrapped_class(methods: type[ImageNetModel]) -> type[nn.Module]:
    """torchvision's class of the same name as `methods`, with those methods added."""
    from torchvision import models

    base = getattr(models, methods.__name__)
    namespace = {"__module__": methods.__module__, "__doc__": base.__doc__}
    return type(methods.__name__, (methods, base), namespace)


def register_torchvision(
    name: str,
    methods: type[ImageNetModel],
    *,
    family: str,
    description: str,
    entry: ChallengeEntry,
    paper: str,
    small_side: int = 32,
    **fixed: object,
) -> None:
    """Register `name`: torchvision's builder of that name (no weights), re-classed to
    torchvision's class with the family's `methods` added."""

    def build(num_classes: int = 1000, in_channels: int = 3, **config: object) -> nn.Module:
        from torchvision import models

        torchvision_builder = getattr(models, name)
        model = torchvision_builder(weights=None, num_classes=num_classes, **{**fixed, **config})
        model.__class__ = wrapped_class(methods)  # adds methods only; keys are unchanged
        if in_channels != 3:
            replace_first_conv(model, in_channels)
        return model

    build.__name__ = name
    build.__doc__ = f"{description} (torchvision.models.{name})."
    register_model(
        name,
        family=family,
        description=description,
        input_size=IMAGENET_INPUT,
        normalization=IMAGENET_NORMALIZATION,
        paper=paper,
        year=entry.year,
        small_input_size=(3, small_side, small_side),
        train_defaults=dict(batch_size=64, lr=0.01, weight_decay=5e-4, augment=False),
    )(build)
    CHALLENGE_ENTRIES[name] = entry
