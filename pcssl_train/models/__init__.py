"""Backbones and building blocks; importing this registers every model."""

from . import dgcnn, image_transformer, pointnet, point_transformer, resnet  # noqa: F401  (registration)
from .registry import create_model, list_models, register_model

register_model("pointnet_encoder")(pointnet.PointNetEncoder)
register_model("dgcnn_encoder")(dgcnn.DGCNNEncoder)

__all__ = ["create_model", "list_models", "register_model"]
