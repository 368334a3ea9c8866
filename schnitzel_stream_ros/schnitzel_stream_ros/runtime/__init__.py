"""The runtime: hosts plugins as ROS nodes in our component container and runs graphs.

One concept per module: plugin_host (one plugin instance, ROS-free), inbox (bounded queue and drop
policies), mailbox (a node's inboxes, arrival order, `block`), workers (the threads that run plugin
code), bus (in-container topics: zero-copy hand-off, DDS only for outside listeners), load_spec (a
load request checked before a node exists), ros_params (plugin parameters as ROS parameters),
ros_node (a plugin as a real rclpy node), container (load/unload/list services, run control),
executors (rclpy executors and how they are spun), container_main (the `component_container`
executable), deterministic (upstream run semantics, one thread), live_run and container_handles
(live mode, one process per container group), runner (`schnitzel-stream run`). See docs/runtime.md.
"""
