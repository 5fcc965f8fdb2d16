"""Lightning callbacks: the transformers' crop IoU and gallery, preemption checkpoints, the run
config stored in every checkpoint."""

from stnlab.callbacks.crop_iou import CropIoU, crop_iou
from stnlab.callbacks.gallery import STGallery, grid_outline
from stnlab.callbacks.preemption import Preempted, PreemptionCheckpoint
from stnlab.callbacks.run_config import RunConfigInCheckpoint

__all__ = ["CropIoU", "Preempted", "PreemptionCheckpoint", "RunConfigInCheckpoint", "STGallery",
           "crop_iou", "grid_outline"]
