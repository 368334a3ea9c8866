"""Sensor sources: serial line devices, ROS sensor and image topics, a simulated sensor."""
