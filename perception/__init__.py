"""PromptFusion perception core: typed sensor frames, sources, models and the inference pipeline.

Nothing in this package imports rclpy; ROS 2 lives in ``ros_nodes``.
"""

__version__ = "0.1.0"
