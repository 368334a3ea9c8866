"""OpenCvBboxDisplaySink (upstream name and keys): frames with their detection boxes, for people.

Upstream opens an OpenCV window. On a robot or a server the natural viewer is a ROS topic, so this
sink always publishes the annotated frame as sensor_msgs/Image on its output `image` (`~/image`,
remappable; view it with rqt_image_view, RViz or Foxglove). Where the machine has a display
(DISPLAY or WAYLAND_DISPLAY) and OpenCV was built with GUI support, it also shows the window as
upstream did. Where no window can open — no display, or opencv-python-headless (this suite's pinned
OpenCV has no GUI) — it says so once and keeps publishing: a graph written for a desktop runs
unchanged on a headless machine.

Frames come from YoloV8DetectorNode (bare image, boxes in meta `detections`) or from upstream-style
plugins (payload `{frame, detections, frame_idx}`); the drawing is the shared overlay
(nodes/sinks/overlay.py). The quit key (q, Q, Esc, with `stop_on_quit_key`) closes the window and
the node keeps publishing; upstream ended the whole run there, but a node does not stop its graph
here — stop the run with Ctrl-C (SIGINT) or `--duration`.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
from std_msgs.msg import Header

from schnitzel_stream_ros.codec.image import frame_to_image_msg
from schnitzel_stream_ros.codec.timestamps import ts_to_stamp
from schnitzel_stream_ros.nodes.sinks.annotated_image import IMAGE_MSG_TYPE
from schnitzel_stream_ros.nodes.sinks.overlay import boxes_in, draw, drawable_frame
from schnitzel_stream_ros.nodes.vision.frames import DETECTIONS_META, frame_idx_of
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import DEFAULT_INPUT, DEFAULT_OUTPUT, Outputs, Param, Plugin, Port, Role

IMAGE_OUTPUT = 'image'
#: keys that close the window: Esc, q, Q (upstream's)
QUIT_KEYS = frozenset({27, ord('q'), ord('Q')})


def gui_backend(build_information: str) -> str | None:
    """The GUI backend named in cv2.getBuildInformation() (GTK3, QT5, WIN32UI, COCOA...), None if none."""
    for line in build_information.splitlines():
        name, _, value = line.strip().partition(':')
        if name == 'GUI':
            value = value.strip()
            return None if not value or value.upper() in ('NONE', 'NO') else value
    return None


def window_unavailable(env: Mapping[str, str], build_information: str) -> str | None:
    """Why no OpenCV window can open here, or None when one may."""
    if not (env.get('DISPLAY') or env.get('WAYLAND_DISPLAY')):
        return 'DISPLAY and WAYLAND_DISPLAY are unset'
    if gui_backend(build_information) is None:
        return 'this OpenCV build has no GUI support (e.g. opencv-python-headless)'
    return None


def _colour_problem(value: Any) -> str | None:
    ok = (isinstance(value, list) and len(value) == 3
          and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value))
    return None if ok else f"parameter 'color_bgr': expected [b, g, r] with integers 0..255, got {value!r}"


class OpenCvBboxDisplaySink(Plugin):
    """Frames with their boxes as sensor_msgs/Image, and in an OpenCV window where one can open."""

    ROLE = Role.SINK
    INPUTS = (
        Port(DEFAULT_INPUT, frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY,
             description='frames with meta.detections (YoloV8DetectorNode) or upstream {frame, detections}'),
    )
    OUTPUTS = (
        Port(IMAGE_OUTPUT, frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY, msg_type=IMAGE_MSG_TYPE,
             description='annotated frames as sensor_msgs/Image'),
        Port(DEFAULT_OUTPUT, frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY,
             description='the input frame, unchanged (with forward: true)'),
    )
    PARAMS = (
        Param('window_name', str, 'Schnitzel Stream - YOLO', 'title of the OpenCV window'),
        Param('wait_key_ms', int, 1, 'cv2.waitKey time per shown frame (0 is taken as 1)', min=0, max=1000),
        Param('line_thickness', int, 2, 'box line thickness in pixels', min=1, max=20),
        Param('font_scale', float, 0.6, 'label text scale', min=0.1, max=10.0),
        Param('color_bgr', list, [48, 220, 48], 'box colour [b, g, r]'),
        Param('show_stats', bool, True, 'write source, frame index and box count in the corner'),
        Param('stop_on_quit_key', bool, True, 'q / Q / Esc close the window (publishing goes on)'),
        Param('forward', bool, False, 'emit the input frame on `out` (then usable as kind: node)'),
        Param('display', str, 'auto', "'auto': a window where one can open; 'off': publish only",
              choices=('auto', 'off')),
    )

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        problem = _colour_problem(params['color_bgr'])
        return [problem] if problem else []

    def setup(self) -> None:
        p = self.params
        self.colour = tuple(p['color_bgr'])
        #: the window to show frames in (None: publish only); opened on the first frame, in the
        #: thread that shows every later frame (GUI toolkits want one thread per window)
        self.window: str | None = None
        self.window_open = False
        if p['display'] == 'off':
            return
        reason = window_unavailable(os.environ, cv2.getBuildInformation())
        if reason is None:
            self.window = p['window_name']
        else:
            self._publish_only(f'no display ({reason})')

    def _publish_only(self, why: str) -> None:
        """Say once why nothing is shown, and go on publishing."""
        self._close_window()
        self.log.warning(f"node '{self.node_id}': {why}: publishing ~/{IMAGE_OUTPUT} only "
                         '(view it with rqt_image_view or Foxglove)')

    def _detections(self, packet: StreamPacket) -> list[Mapping[str, Any]]:
        attached = packet.meta.get(DETECTIONS_META)
        if isinstance(attached, list):
            return boxes_in(attached)
        if isinstance(packet.payload, Mapping):  # upstream layout {frame, detections, frame_idx}
            return boxes_in(packet.payload.get('detections'))
        return []

    def process(self, packet: StreamPacket, port: str = DEFAULT_INPUT) -> Outputs:
        frame = drawable_frame(packet, self.node_id)
        if frame is None:
            self.count('invalid_frames_total')
            return None
        p = self.params
        detections = self._detections(packet)
        caption = None
        if p['show_stats']:
            index = frame_idx_of(packet)
            caption = f'src={packet.source_id} frame={"?" if index is None else index} det={len(detections)}'
        image = draw(frame, detections, thickness=p['line_thickness'], font_scale=p['font_scale'],
                     box_colour=self.colour, caption=caption)
        header = Header(stamp=ts_to_stamp(packet.ts), frame_id=packet.source_id)
        msg = frame_to_image_msg(image, None, header, field='payload')
        self.emit(packet.derive(payload=msg), IMAGE_OUTPUT)
        self.count('published_total')
        if self.window is not None:
            self._show(image)
        return packet if p['forward'] else None

    def _show(self, image: np.ndarray) -> None:
        assert self.window is not None
        try:
            if not self.window_open:
                cv2.namedWindow(self.window, cv2.WINDOW_NORMAL)
                self.window_open = True
            cv2.imshow(self.window, image)
            key = cv2.waitKey(max(1, self.params['wait_key_ms'])) & 0xFF
        except cv2.error as exc:
            detail = (str(exc).strip().splitlines() or ['?'])[-1][:200]
            self._publish_only(f'no display (the OpenCV window failed: {detail})')
            return
        self.count('shown_total')
        if self.params['stop_on_quit_key'] and key in QUIT_KEYS:
            self.log.info(f"node '{self.node_id}': quit key: window closed, still publishing "
                          f'~/{IMAGE_OUTPUT} (stop the run with Ctrl-C)')
            self._close_window()

    def _close_window(self) -> None:
        window, was_open = self.window, self.window_open
        self.window, self.window_open = None, False
        if window is not None and was_open:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(window)

    def close(self) -> None:
        self._close_window()
