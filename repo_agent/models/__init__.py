"""Model providers behind one small interface (base.py). factory.py: `build_model` picks a generic one by
name; `episode_model` builds the model of one episode (the oracle, which knows the task, included)."""

from .base import Model, ModelReply, ProviderConfig, Sampling
from .factory import build_model, episode_model

__all__ = ["Model", "ModelReply", "ProviderConfig", "Sampling", "build_model", "episode_model"]
