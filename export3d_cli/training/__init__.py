"""Training objectives (the training loops arrive with the training commands)."""

from export3d_cli.training.contrastive_loss import CLeBSContrastiveLoss, clebs_contrastive_loss

__all__ = ["CLeBSContrastiveLoss", "clebs_contrastive_loss"]
