"""Evaluation: the official nuScenes detection eval on our outputs."""
