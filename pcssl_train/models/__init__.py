"""Backbones and building blocks; importing this registers every model (point encoders first, in
the order the evaluation lists them)."""

from . import point_transformer, pointnet, dgcnn, image_transformer, resnet  # noqa: F401  (registration)
from .registry import create_classifier, create_model, list_models, point_encoders, register_model

__all__ = ["create_classifier", "create_model", "list_models", "point_encoders", "register_model"]
