"""archlab: transformer architecture ablations (Hydra + PyTorch Lightning + W&B)."""

__version__ = "0.1.0"
