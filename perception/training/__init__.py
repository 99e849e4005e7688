"""The mmengine side: model wrapper, dataset adapter, nuScenes metric."""
