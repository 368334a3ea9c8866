"""The runtime: hosts plugins as ROS nodes in our component container and runs graphs.

Modules, one concept each: plugin_host (one plugin instance, ROS-free), inbox (bounded queue and
drop policies), mailbox (a node's inboxes + its worker thread), deterministic (upstream run
semantics, single-threaded), bus (in-container topics: zero-copy hand-off, DDS only for outside
listeners), ros_node (a plugin as a real rclpy node), container (load/unload/list services),
container_main (the `component_container` executable), runner (`schnitzel-stream run`).
"""
