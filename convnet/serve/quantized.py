"""`convnet serve --precision int8`: each served network answers from its int8 form.

Every network served (the pair, and the augmentation switch's) is quantized once, at start,
by convnet.engine.int8 (ONNX Runtime, static QDQ): calibrated on the run's training images
or on a folder given, kept beside the run (`RUN/int8/`), so a later start reads it instead.
The int8 model gives the probabilities and top classes; the fp32 model still gives what the
page looks inside (feature maps, F6, output scores, explanations), which the page recomputes
and checks in fp32, and the fp32 answer to the same input, so the page can say whether the
two agree on each drawing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from convnet.errors import UserError
from convnet.serve.served import ROLE_TITLES, ServedModel, ServedModels

# What computes the page's answers. The page's own recomputations are fp32, and a bf16 or
# fp16 answer would only be fp32's rounded, so serve offers fp32 and int8 alone.
PRECISIONS = ("fp32", "int8")


def check_precision(name: str) -> str:
    """`name` if the server can answer in it here, else a UserError in one paragraph (int8:
    a CPU with VNNI and ONNX Runtime; the server computes on the CPU)."""
    if name not in PRECISIONS:
        raise UserError(
            f"convnet serve answers in fp32 or, on a CPU with VNNI, in int8, not in '{name}': "
            "its page recomputes the CNN's cells in fp32. Use --precision fp32 or int8."
        )
    if name == "int8":
        from convnet.engine.int8 import check_int8

        check_int8(torch.device("cpu"))
    return name


def served_networks(models: ServedModels) -> list[ServedModel]:
    """Each network served, once: the default pair first, then the switch's."""
    found: dict[int, ServedModel] = {}
    for served in (models.cnn, models.ordinary, *models.networks.values()):
        found.setdefault(id(served), served)
    return list(found.values())


def quantize(
    models: ServedModels,
    calibration: str | None = None,
    count: int | None = None,
    data_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> ServedModels:
    """Give every served network its int8 form (`ServedModel.int8`), calibrated on `count`
    images of the folder `calibration`, else of the run's training images (read from
    `data_dir` for MNIST, else where the run read them). UserError for a model that cannot
    be quantized, or for bare weights without `calibration`."""
    from convnet.engine.int8 import CALIBRATION_IMAGES, int8_without_data

    for served in served_networks(models):
        log(f"{ROLE_TITLES[served.role]} {served.loaded.name} ({served.origin.run}) in int8:")
        served.int8 = int8_without_data(
            served.loaded, calibration, count or CALIBRATION_IMAGES, log, data_dir
        )
        note = served.int8.note
        errors = (
            f"; top-1 error {note['int8_top1_error']:.2%} (fp32: {note['fp32_top1_error']:.2%})"
            if "int8_top1_error" in note
            else ""
        )
        log(
            f"  calibrated on {note['calibration']}; its top-1 agreed with fp32 on "
            f"{note['top1_agreement']:.1%} of {note['checked_images']} held-out images{errors}."
        )
    return models
