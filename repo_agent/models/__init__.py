"""Model providers behind one small interface (see base.py). `build_model` picks one by name."""

from .base import Model, ModelReply, ProviderConfig, Sampling, build_model

__all__ = ["Model", "ModelReply", "ProviderConfig", "Sampling", "build_model"]
