"""Builders of the server for tests: the app's models, untrained (how the server answers
does not depend on training)."""

from __future__ import annotations


def untrained_models():
    """LeNet-5 and an MLP as the page serves them, untrained: how the server answers does
    not depend on training, and building them takes milliseconds."""
    import torch

    from convnet.engine.run import LoadedModel
    from convnet.models import get_model, get_model_spec
    from convnet.serve.models import CNN, ORDINARY, ServedModel, ServedModels

    torch.manual_seed(0)
    served = []
    for role, name in ((CNN, "lenet5"), (ORDINARY, "mlp")):
        model = get_model(name, num_classes=10).eval()
        loaded = LoadedModel(name, get_model_spec(name), model, tuple(str(i) for i in range(10)))
        served.append(ServedModel(role, loaded, "untrained, for tests"))
    return ServedModels(*served)
