"""The control plane: an authenticated HTTP API and an operator page, served by the runner.

The data plane (containers, DDS, inboxes) never waits for it: the runner hands it the snapshots it
already makes, a separate rclpy node listens to `/diagnostics`, event and decision topics, and every
action goes through the machinery the command line uses (the reconciler's job queue, the ROS
parameter services, the durable queue's dead-letter operations). See docs/control.md.
"""
