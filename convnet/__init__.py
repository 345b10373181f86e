"""convnet: convolutional neural networks for image classification, measured on real data.

The Python API (docs/api.md): `create_model`, `list_models`, `summary`, `fit`, `load_run`,
`evaluate`. Importing the package imports no torch; each function does, when called.
"""

__version__ = "0.1.0"

from convnet.api import create_model, evaluate, fit, list_models, load_run, summary  # noqa: E402

__all__ = ["create_model", "evaluate", "fit", "list_models", "load_run", "summary"]
