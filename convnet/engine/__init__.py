"""Engine: training, evaluation, metrics, checkpoints, device and precision."""
