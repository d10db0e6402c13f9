"""The model: one small module per design choice, composed by ``transformer.py``."""

from archlab.model.transformer import Transformer

__all__ = ["Transformer"]
