"""ROS 2 adapters (rclpy lives only here): the fusion node, synchronizer, outputs and the log player."""
