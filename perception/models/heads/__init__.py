from perception.models.heads.detection import CenterHead

__all__ = ["CenterHead"]
