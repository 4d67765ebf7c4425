"""Training: the loop shared by pre-training and fine-tuning, checkpoints, and distribution."""
