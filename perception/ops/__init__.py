"""Hot kernels: voxelization (numba on CPU, torch on any device, identical results)."""

from perception.ops.voxelize import VoxelGrid, voxelize_dynamic, voxelize_hard

__all__ = ["VoxelGrid", "voxelize_dynamic", "voxelize_hard"]
