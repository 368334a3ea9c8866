"""The ports a node really has, and what flows out of them.

A plugin declares ports on its class. Two optional class-level hooks refine them (documented in
docs/plugins.md; duck-typed so plugin.py stays minimal):
- `ports_for(params) -> (inputs, outputs)`: ports that depend on parameters (e.g. StaticSource's
  output kinds are the kinds of the packets it is configured with);
- `PASSTHROUGH = True`: outputs carry what came in (Identity, samplers, forwarding sinks), so the
  validator propagates the upstream kinds and payload profile through the node instead of assuming
  the declared wildcard.
A graph may narrow a port further with the node's `ports:` extension.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.packet import PayloadProfile
from schnitzel_stream_ros.plugin import STREAM_PACKET_MSG, Plugin, Port, Role

#: Portability order: a value can travel at most as far as its least portable part.
_PORTABILITY = {PayloadProfile.INPROC_ANY: 0, PayloadProfile.JSON_PORTABLE: 1, PayloadProfile.REF_PORTABLE: 2}


def declared_ports(cls: type[Plugin], params: Mapping[str, Any] | None
                   ) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
    """(inputs, outputs) of a plugin for these parameters (None: class-level declarations only).

    Sources have no inputs.
    """
    inputs, outputs = cls.ports_for(params) if params is not None else (cls.INPUTS, cls.OUTPUTS)
    if Role(cls.ROLE) is Role.SOURCE:
        inputs = ()
    return tuple(inputs), tuple(outputs)


def topic_inputs(cls: type[Plugin], params: Mapping[str, Any] | None) -> dict[str, Port]:
    """The inputs that subscribe to a ROS topic of their own (a ROS type, not StreamPacket: a topic
    source's `in`, an e-stop input), a source's included. No edge comes into them, so their
    subscription QoS is written on the node (`qos: {<port>: ...}`)."""
    inputs = cls.ports_for(params)[0] if params is not None else cls.INPUTS
    return {p.name: p for p in inputs if p.msg_type != STREAM_PACKET_MSG}


def is_passthrough(cls: type[Plugin]) -> bool:
    return bool(cls.PASSTHROUGH)


def least_portable(profiles: list[PayloadProfile]) -> PayloadProfile:
    return min(profiles, key=lambda p: _PORTABILITY[p])


def narrow_kinds(declared: frozenset[str], incoming: frozenset[str]) -> frozenset[str]:
    """Kinds a pass-through output carries: what comes in, limited to what it declares."""
    if '*' in incoming:
        return declared
    if '*' in declared:
        return incoming
    return declared & incoming
