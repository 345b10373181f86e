"""convnet: convolutional neural networks for image classification, measured on real data."""

__version__ = "0.1.0"
