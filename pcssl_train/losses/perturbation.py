"""SeRP-PointNet loss: which points were perturbed (cross-entropy) + their reconstruction (SeRP eq. 1)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .chamfer import ChamferLoss


class PerturbationLoss(nn.Module):
    """``alpha_cls`` x CE(perturbed or not) + ``alpha_rec`` x reconstruction.

    ``rec="delta"``: the head predicts clean - perturbed per point, MSE (SeRP delta-learning).
    ``rec="cd"``: the head predicts clean coordinates, Chamfer-L2 to the clean cloud (cd-l2 learning).
    ``cls_weights``: (unperturbed, perturbed) class weights of the cross-entropy, None = unweighted.

    Also returned, to tell whether the pretext is learned at all: ``cls_acc_chance`` (the accuracy
    of calling every point unperturbed) and, for "delta", ``rec_zero`` (the MSE of predicting no
    shift).
    """

    def __init__(self, rec: str = "delta", alpha_cls: float = 0.001, alpha_rec: float = 1.5,
                 cls_weights: tuple[float, float] | None = None):
        super().__init__()
        if rec not in ("delta", "cd"):
            raise ValueError(f"rec must be 'delta' or 'cd', got {rec!r}")
        if cls_weights is not None and len(cls_weights) != 2:
            raise ValueError(f"cls_weights must be two numbers or None, got {cls_weights!r}")
        self.rec, self.alpha_cls, self.alpha_rec = rec, alpha_cls, alpha_rec
        weights = None if cls_weights is None else torch.tensor(cls_weights, dtype=torch.float)
        self.register_buffer("cls_weights", weights, persistent=False)
        self.chamfer = ChamferLoss(2)

    def forward(self, logits, rec_out, perturbed, noisy, clean) -> dict[str, torch.Tensor]:
        """logits (B,2,N), rec_out (B,N,3), perturbed (B,N) bool, noisy/clean (B,N,3)."""
        cls = F.cross_entropy(logits.float(), perturbed.long(), weight=self.cls_weights)
        if self.rec == "delta":
            rec = F.mse_loss(rec_out.float(), (clean - noisy).float())
        else:
            rec = self.chamfer(rec_out, clean)
        accuracy = (logits.argmax(1) == perturbed).float().mean()
        out = {"loss": self.alpha_cls * cls + self.alpha_rec * rec, "cls": cls, "rec": rec,
               "cls_acc": accuracy.detach(), "cls_acc_chance": 1 - perturbed.float().mean()}
        if self.rec == "delta":  # what predicting "no shift" scores: rec below it means the shifts are learned
            out["rec_zero"] = (clean - noisy).float().pow(2).mean()
        return out
