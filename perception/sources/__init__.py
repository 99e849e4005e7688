"""Everything that yields SensorFrames."""

from perception.sources.files import SourceDataError

__all__ = ["SourceDataError"]
