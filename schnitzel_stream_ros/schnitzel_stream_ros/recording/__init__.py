"""Recording and replay: ROS topics to MCAP as ros2 bag writes it, and recordings back into graphs.

- msg_definitions: complete ros2msg schema text from the installed .msg files
- mcap_writer: one MCAP file (profile ros2, CDR messages, periodic chunk flush)
- mcap_reader: recordings as hostile input (every size bounded), messages in file order
- replay_packets: recorded messages -> the StreamPackets the live graph carried
- record: the `schnitzel-stream record` program (a DDS subscriber process)
- replay: the `schnitzel-stream replay` verb (a graph fed by McapReplaySource)
"""
