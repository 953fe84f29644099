"""Training: labels, split, models, distributed training, evaluation, predictions."""
