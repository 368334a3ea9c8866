"""ROS 2 name rules for node names, namespaces and topics, and how port topics are resolved.

Graph ids become ROS node names and ports become topics, so a name that ROS would reject at start
must be refused by the validator instead, with the place it was written. The rules follow the
ROS 2 design article "Topic and Service name mapping to DDS" (tokens of letters, digits and `_`,
not starting with a digit, `/` separated, optional leading `/` or `~`). Substitutions (`{node}`)
are not supported in graph files: topics are fully decided at validation time.
"""
from __future__ import annotations

import re

_TOKEN = r'[A-Za-z_][A-Za-z0-9_]*'
_NODE_NAME = re.compile(rf'^{_TOKEN}$')
_NAMESPACE = re.compile(rf'^/(?:{_TOKEN}(?:/{_TOKEN})*)?$')
_TOPIC = re.compile(rf'^(?:/|~/)?{_TOKEN}(?:/{_TOKEN})*$')
_IDENTIFIER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


def is_identifier(name: str) -> bool:
    """Port names (upstream rule): a Python-style identifier."""
    return bool(_IDENTIFIER.match(name))


def node_name_problem(name: str) -> str | None:
    """Why `name` is not a valid ROS node name, or None."""
    if not _NODE_NAME.match(name):
        return 'is not a valid ROS node name (letters, digits and _, not starting with a digit)'
    return None


def namespace_problem(namespace: str) -> str | None:
    """Why `namespace` is not a valid absolute ROS namespace, or None."""
    if not _NAMESPACE.match(namespace):
        return ("is not a valid ROS namespace (absolute, '/'-separated tokens of letters, digits "
                "and _, no trailing '/')")
    return None


def topic_problem(topic: str) -> str | None:
    """Why `topic` is not a valid ROS topic name, or None."""
    if not _TOPIC.match(topic):
        return ("is not a valid ROS topic name ('/'-separated tokens of letters, digits and _, "
                "each not starting with a digit; optional leading '/' or '~/')")
    return None


def join(namespace: str, *parts: str) -> str:
    """Absolute name from a namespace and relative parts: join('/a', 'b', 'c') == '/a/b/c'."""
    base = namespace.rstrip('/')
    return base + '/' + '/'.join(parts)


def default_topic(namespace: str, node: str, port: str) -> str:
    """Topic of an output port nobody remapped: the node's private name `~/<port>`."""
    return join(namespace, node, port)


def resolve_topic(topic: str, namespace: str, node: str) -> str:
    """A valid topic name as written in the graph -> absolute topic (ROS resolution rules)."""
    if topic.startswith('/'):
        return topic
    if topic.startswith('~/'):
        return join(namespace, node, topic[2:])
    return join(namespace, topic)
