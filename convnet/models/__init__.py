"""Models: a registry plus one file per family. Importing this package registers them all."""

from convnet.models import lenet, mlp  # noqa: F401  (importing registers the models)
from convnet.models.registry import MODELS, ModelSpec, get_model, get_model_spec, list_models

__all__ = ["MODELS", "ModelSpec", "get_model", "get_model_spec", "list_models"]
