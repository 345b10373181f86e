"""timm's own `train.py` training convnet's ResNet-20 (`resnet_mini`, He et al. 2016 §4.2),
registered in timm's model registry as `convnet_resnet20`: so the two trainers of
`fashion_time_to_93.py` train the same network and differ only in their pipeline and recipe.

Run: `python benchmarks/timm_train_resnet20.py TRAIN_PY [train.py's arguments] --model
convnet_resnet20` (train.py is not in timm's pip package; take it from
https://github.com/huggingface/pytorch-image-models at the installed timm's version).
"""

from __future__ import annotations

import runpy
import sys

from timm.models import register_model

from convnet.models import get_model

# Fashion-MNIST's pixel mean and standard deviation (of the 60,000 training images, in [0, 1]),
# what timm normalises with; its evaluation resizes 28 → 36 and crops 32 (crop_pct 0.875).
FASHION_MEAN, FASHION_STD = 0.286, 0.353


@register_model
def convnet_resnet20(pretrained: bool = False, num_classes: int = 10, in_chans: int = 3, **_):
    """convnet's resnet_mini, with the data configuration timm's train.py reads."""
    model = get_model("resnet_mini", num_classes=num_classes, in_channels=in_chans)
    model.pretrained_cfg = dict(
        input_size=(in_chans, 32, 32),
        mean=(FASHION_MEAN,) * in_chans,
        std=(FASHION_STD,) * in_chans,
        crop_pct=0.875,
        interpolation="bilinear",
        num_classes=num_classes,
    )
    return model


if __name__ == "__main__":
    train_py, arguments = sys.argv[1], sys.argv[2:]
    sys.argv = [train_py, *arguments]
    runpy.run_path(train_py, run_name="__main__")
