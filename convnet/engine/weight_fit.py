"""Loading a weights file into a model: the one loader, used wherever weights are loaded (a
run, MODEL --weights FILE, torchvision's weights, initial --weights, checkpoints).

What it takes is what fits and holds numbers: every tensor by name and shape, floating point
where the model's is (an integer file would be cast silently), and finite (a NaN or an
infinity in a weight makes every prediction NaN: `predict` printed "nan%" and `evaluate`
called a class 100% right). Names may carry one prefix on every key that the model lacks
(Lightning saves `model.`; other wrappers `net.`, `backbone.`): when removing it gives an
exact fit, it is removed and said. A file that does not fit is refused with what does not:
the class count, the input channels, the names of another model. With `replace_classifier`,
a file that differs only in the class count of the final classifier loads everything else
(fine-tuning); with `adapt_channels`, grey weights start a colour model and the reverse.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from convnet.engine.weight_files import read_weights_file
from convnet.errors import UserError
from convnet.wording import counted


def find_classifier(model: nn.Module) -> tuple[str, list[str]] | None:
    """The final classifier: the last module in `named_modules()` order that holds state of
    its own (parameters or persistent buffers), when all its tensors lead with one dimension,
    the class count. Returns its name and its state_dict keys; None if there is none.

    This is `fc` in torchvision's ResNet and GoogLeNet, `classifier.6` in AlexNet and VGG,
    `head.output` or `head.N` in our own models, and NiN's last 1×1 convolution, whose output
    channels are the class maps."""
    found: tuple[str, list[str]] | None = None
    for name, module in model.named_modules():
        own = [key for key, _ in module.named_parameters(recurse=False)] + [
            key
            for key, _ in module.named_buffers(recurse=False)
            if key not in module._non_persistent_buffers_set
        ]
        if own:
            found = (name, [f"{name}.{key}" if name else key for key in own])
    if found is None:
        return None
    state = model.state_dict()
    leading = {state[key].shape[0] if state[key].dim() else None for key in found[1]}
    return found if len(leading) == 1 and None not in leading else None


def classes_in_file(
    model: nn.Module, path: Path, tensors: dict[str, torch.Tensor] | None = None
) -> int | None:
    """The class count a weights file was saved for: the leading size, as stored in the file
    (or its `tensors`, read already), of `model`'s classifier (`find_classifier`); None when
    the model has none or the file does not hold it. `model` may live on the meta device."""
    classifier = find_classifier(model)
    if classifier is None:
        return None
    tensors = read_weights_file(path)[0] if tensors is None else tensors
    tensors, _ = strip_to_fit(tensors, model.state_dict())
    stored = tensors.get(classifier[1][0])
    return int(stored.shape[0]) if stored is not None and stored.dim() else None


def channels_in_file(model: nn.Module, tensors: dict[str, torch.Tensor]) -> int | None:
    """The input channels a weights file's `tensors` were saved for: those of `model`'s first
    convolution's kernel (out, in, h, w) as stored; None without one. `model` may live on the
    meta device."""
    expected = model.state_dict()
    tensors, _ = strip_to_fit(tensors, expected)
    first = next((key for key, value in expected.items() if value.dim() == 4), None)
    kernel = tensors.get(first) if first is not None else None
    return int(kernel.shape[1]) if kernel is not None and kernel.dim() == 4 else None


def shared_prefix(keys: Iterable[str]) -> str | None:
    """The first dotted component every key starts with ("model." for "model.fc.weight",
    "model.conv1.weight"), or None when they do not all share one."""
    heads = {key.split(".", 1)[0] + "." if "." in key else None for key in keys}
    return heads.pop() if len(heads) == 1 and None not in heads else None


def strip_to_fit(
    tensors: dict[str, torch.Tensor], expected: Iterable[str]
) -> tuple[dict[str, torch.Tensor], str]:
    """`tensors` with the prefixes every key shares removed, as long as that makes their
    names exactly `expected`'s, and the prefix removed ("" when none: `tensors` unchanged)."""
    wanted = set(expected)
    stripped, removed = tensors, ""
    while set(stripped) != wanted:
        prefix = shared_prefix(stripped)
        if prefix is None or prefix in {key.split(".", 1)[0] + "." for key in wanted}:
            return tensors, ""
        stripped = {key[len(prefix) :]: value for key, value in stripped.items()}
        removed += prefix
    return stripped, removed


def check_values(
    tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], path: Path
) -> None:
    """Refuse (UserError naming the tensors) a file whose weights are not numbers (NaN or
    infinite) or not of the model's kind (integers for floating-point weights, or floats for
    a counter such as batch normalization's num_batches_tracked)."""
    kinds = [
        f"{key} ({tensors[key].dtype} for the model's {expected[key].dtype})"
        for key in expected
        if key in tensors and tensors[key].is_floating_point() != expected[key].is_floating_point()
    ]
    if kinds:
        raise UserError(
            f"{path} holds tensors of another kind than the model's: {_listing(kinds)}. "
            "Weights are floating point; converted, integers would be used without a word. "
            "Was the file written by something other than a training?"
        )
    broken = []
    for key in expected:
        value = tensors.get(key)
        if value is None or not value.is_floating_point():
            continue
        finite = torch.isfinite(value)
        if not finite.all():
            nans = int(torch.isnan(value).sum())
            broken.append(f"{key} ({nans:,} NaN, {int((~finite).sum()) - nans:,} infinite)")
    if broken:
        raise UserError(
            f"{path} holds weights that are not numbers: {_listing(broken)}. Every prediction "
            "through them would be NaN. The training that wrote them diverged (a smaller "
            "--lr helps) or the file is damaged; use an earlier checkpoint or train again."
        )


def _listing(items: list[str], shown: int = 5) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _describe_misfit(missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> str:
    details = []
    if missing:
        details.append(f"missing {', '.join(missing[:5])}")
    if unexpected:
        details.append(f"unexpected {', '.join(unexpected[:5])}")
    if wrong_shape:
        details.append(f"wrong shape {', '.join(wrong_shape[:5])}")
    return "; ".join(details)


def _diagnosis(
    model: nn.Module,
    tensors: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    missing: list[str],
    unexpected: list[str],
    wrong: list[str],
) -> str:
    """What the misfit means, in a sentence: another class count, other input channels,
    one prefix on every key, or the names of another model."""
    if not missing and not unexpected and wrong:
        classifier = find_classifier(model)
        if classifier is not None and set(wrong) <= set(classifier[1]):
            theirs, ours = tensors[wrong[0]].shape, expected[wrong[0]].shape
            if len(theirs) == len(ours) and theirs[1:] == ours[1:]:
                return (
                    f"It was saved for {theirs[0]} classes; this model has {ours[0]}: build it "
                    f"for {theirs[0]} classes, or train from it (--weights) to fine-tune."
                )
        first = wrong[0]
        theirs, ours = tensors[first].shape, expected[first].shape
        if first == next(iter(expected)) and len(theirs) == 4 and theirs[1] != ours[1]:
            return f"It was saved for {theirs[1]}-channel inputs; this model takes {ours[1]}."
        return "It was saved for another configuration of this model (other layer sizes)."
    prefix = shared_prefix(tensors)
    if prefix is not None and shared_prefix(expected) != prefix:
        return (
            f"Every key of the file starts with '{prefix}', and without it the names still do "
            "not match this model's: it holds another model, or a part of one."
        )
    shared = len(set(tensors) & set(expected))
    if shared < len(expected) / 2:
        theirs = ", ".join(key for key in tensors if key not in expected)
        return (
            f"Only {shared} of the model's {len(expected)} tensor names are in it (it has e.g. "
            f"{theirs[:80]}…): it was saved for another model."
        )
    return "Some of its layers differ: a modified model, or this one built with other options."


def adapt_input_channels(
    tensors: dict[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    path: Path,
    log: Callable[[str], None],
) -> dict[str, torch.Tensor]:
    """The first convolution's kernel of grey weights for colour images, or the other way
    round, as timm's `adapt_input_conv` makes it: 3 → 1 channels sums the kernels over the
    colours; 1 → 3 repeats the kernel for each colour divided by 3, so a grey image (equal
    colours) gives the same feature maps. Said in one line; other tensors are untouched."""
    first = next((key for key, value in expected.items() if value.dim() == 4), None)
    if first is None or first not in tensors:
        return tensors
    theirs, ours = tensors[first], expected[first]
    if theirs.dim() != 4 or theirs.shape[0] != ours.shape[0] or theirs.shape[2:] != ours.shape[2:]:
        return tensors
    if (theirs.shape[1], ours.shape[1]) == (3, 1):
        adapted = theirs.sum(dim=1, keepdim=True)
    elif (theirs.shape[1], ours.shape[1]) == (1, 3):
        adapted = theirs.repeat(1, 3, 1, 1) / 3
    else:
        return tensors
    log(
        f"Adapted {first} of {path} from {theirs.shape[1]} to {counted(ours.shape[1], 'input channel')} "
        f"({'summed over the colours' if ours.shape[1] == 1 else 'repeated for each colour, ÷3'})."
    )
    return {**tensors, first: adapted}


def load_weights(
    model: nn.Module,
    path: Path,
    *,
    replace_classifier: bool = False,
    adapt_channels: bool = False,
    log: Callable[[str], None] | None = None,
    stored: tuple[dict[str, torch.Tensor], dict[str, str]] | None = None,
) -> dict[str, str]:
    """Load a weights file into `model` and return the file's metadata; a file that does
    not fit, or whose weights are not finite floating-point numbers, is a UserError naming
    the tensors.

    With `replace_classifier`, a file that differs only in the class count of the final
    classifier (e.g. ImageNet's 1000 classes, fine-tuned to 3) loads everything else and
    keeps the model's freshly initialised classifier, saying so in one line to `log`
    (default: standard error, so that a command's JSON on standard output stays whole). With
    `adapt_channels`, weights for grey images start a colour model and the other way round
    (`adapt_input_channels`). `stored`: the file's tensors and metadata where the caller
    has read them already (`read_weights_file`), so that a large file is read once."""
    log = log or _to_standard_error
    tensors, metadata = stored if stored is not None else read_weights_file(path)
    if hasattr(model, "prepare_state_dict"):  # e.g. GoogLeNet drops torchvision's aux heads
        tensors = model.prepare_state_dict(tensors)
    expected = model.state_dict()
    tensors, prefix = strip_to_fit(tensors, expected)
    if adapt_channels:
        tensors = adapt_input_channels(tensors, expected, path, log)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    replaced = None
    if replace_classifier and wrong and not missing and not unexpected:
        replaced = _classifier_to_replace(model, expected, tensors, wrong)
    if (missing or unexpected or wrong) and replaced is None:
        wrong_shape = [
            f"{k} {tuple(tensors[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong
        ]
        raise UserError(
            f"{path} does not fit this model ({_describe_misfit(missing, unexpected, wrong_shape)})."
            f" {_diagnosis(model, tensors, expected, missing, unexpected, wrong)}"
        )
    keys = replaced[1] if replaced is not None else []
    check_values({k: v for k, v in tensors.items() if k not in keys}, expected, path)
    if prefix:
        log(f"Loaded {path} without the prefix '{prefix}' that every one of its keys carried.")
    if replaced is None:
        model.load_state_dict(tensors)
        return metadata
    name, keys, file_classes = replaced
    model.load_state_dict({**tensors, **{key: expected[key] for key in keys}})  # model's own
    log(
        f"Loaded {len(expected) - len(keys)} of {len(expected)} tensors from {path}; the "
        f"classifier {name} ({file_classes} → {expected[keys[0]].shape[0]} classes) starts "
        "from fresh weights."
    )
    return metadata


def _to_standard_error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _classifier_to_replace(
    model: nn.Module,
    expected: Mapping[str, torch.Tensor],
    tensors: Mapping[str, torch.Tensor],
    wrong: list[str],
) -> tuple[str, list[str], int] | None:
    """(name, keys, the file's class count) when the disagreeing keys `wrong` are exactly
    the classifier's and differ only in their leading dimension, the class count."""
    classifier = find_classifier(model)
    if classifier is None or sorted(wrong) != sorted(classifier[1]):
        return None
    counts = set()
    for key in wrong:
        theirs, ours = tensors[key].shape, expected[key].shape
        if len(theirs) != len(ours) or len(ours) == 0 or theirs[1:] != ours[1:]:
            return None
        counts.add(theirs[0])
    return (classifier[0], classifier[1], counts.pop()) if len(counts) == 1 else None
