"""Names and defaults the help pages show, kept here so that `--help` imports no torch.

Each is a copy of what a module computes when imported (the model registry, the
distortions, the invariance variants, the evolution recipe); tests/commands/test_catalog.py
checks every copy against its source, so the two cannot drift apart.
"""

# convnet.models.list_models(): every registered model, sorted.
MODEL_NAMES = (
    "alexnet",
    "alexnet_mini",
    "googlenet",
    "googlenet_mini",
    "lenet5",
    "lenet5_1998",
    "mlp",
    "mlp_60k",
    "nin_mini",
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet_mini",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "vgg_mini",
)
# convnet.data.distortions.DISTORTIONS, in its order.
DISTORTION_NAMES = ("translate_x", "translate_y", "rotate", "scale", "noise", "elastic")
# convnet.experiments.invariance.VARIANT_KINDS.
INVARIANCE_VARIANTS = ("plain", "augmented", "average", "ablation")
INVARIANCE_SEEDS = 3  # convnet.experiments.invariance.DEFAULT_SEEDS
# convnet.experiments.evolution: DEFAULT_MODELS and the shared recipe (MINI_TRAIN_DEFAULTS).
EVOLUTION_MODELS = (
    "lenet5",
    "alexnet_mini",
    "vgg_mini",
    "nin_mini",
    "googlenet_mini",
    "resnet_mini",
)
EVOLUTION_EPOCHS = 8
EVOLUTION_BATCH_SIZE = 128
EVOLUTION_LR = 0.05
EVOLUTION_WEIGHT_DECAY = 5e-4
