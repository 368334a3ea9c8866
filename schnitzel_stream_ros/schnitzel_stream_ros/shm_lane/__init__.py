"""Frames between container processes on one host through shared memory (iceoryx2).

A `frame` edge that crosses containers on one host runs on a *frame lane*: the producer writes the
pixels once into a sample loaned from its own bounded iceoryx2 pool, a consumer in another process
gets a numpy view of that very memory (no serialisation, no copy through DDS) and holds it as a
lease until its packet is gone. The edge's ROS topic stays: `ros2 topic echo/hz` on it still gets
the StreamPacket while someone listens, and `<topic>/image` carries `sensor_msgs/Image` while a
plain ROS subscriber wants it (docs/shm-lane.md).

Modules: `layout` (what a sample holds, checked on the way in), `lane` (writer, reader, leases,
dead-process cleanup), `ros_glue` (the runtime's output port and input bridge for a lane).
"""
