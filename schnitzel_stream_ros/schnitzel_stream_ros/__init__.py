"""schnitzel_stream_ros: StreamPacket graphs of composable plugin nodes on ROS 2."""
