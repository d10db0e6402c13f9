"""archlab: transformer architecture ablations (Hydra + PyTorch Lightning + W&B)."""

from archlab.startup import install as _lean_imports

__version__ = "0.1.0"

_lean_imports()  # before anything imports lightning → torchmetrics: see archlab/startup.py
