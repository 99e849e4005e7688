from perception.models.heads.detection import CenterHead
from perception.models.heads.grounding import GroundingHead

__all__ = ["CenterHead", "GroundingHead"]
