"""Robot telemetry policies: geofence, battery, stall and diagnostics, each turning readings of the
robot's topics (nodes/sensors, ros_robot_readings.py) into detections for the one event builder."""
