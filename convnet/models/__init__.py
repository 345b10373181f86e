"""Models: a registry plus one file per family. Importing this package registers them all."""

# Importing a family's module registers its models.
from convnet.models import alexnet, googlenet, lenet, mlp, nin, resnet, vgg  # noqa: F401
from convnet.models.registry import (
    MODELS,
    ModelSpec,
    get_model,
    get_model_spec,
    list_models,
    shapes_model,
)

__all__ = ["MODELS", "ModelSpec", "get_model", "get_model_spec", "list_models", "shapes_model"]
