# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
A hostile writer of raw service requests or messages, as a peer with its own DDS stack sends.

rclpy cannot send an ``update_weights`` request or a ``HardFrame`` longer than the message's
bounds (the generated serializer refuses it), and a raw rclpy publisher's topic always starts
with ``/`` while rmw_fastrtps names a service's request topic ``rq/<service>Request``. A peer
outside the project is bound by neither: this one creates an rmw publisher on the DDS topic
itself (ctypes into the rmw library rclpy has loaded, on an rclpy node's participant) and
writes CDR bytes made here, of any length.
"""

from __future__ import annotations

import ctypes
import struct

from rclpy.node import Node
from rclpy.serialization import serialize_message


class _Time(ctypes.Structure):
    _fields_ = [('sec', ctypes.c_uint64), ('nsec', ctypes.c_uint64)]


class _Qos(ctypes.Structure):  # rmw_qos_profile_t (Jazzy and Kilted)
    _fields_ = [('history', ctypes.c_int), ('depth', ctypes.c_size_t),
                ('reliability', ctypes.c_int), ('durability', ctypes.c_int),
                ('deadline', _Time), ('lifespan', _Time), ('liveliness', ctypes.c_int),
                ('liveliness_lease_duration', _Time),
                ('avoid_ros_namespace_conventions', ctypes.c_bool)]


class _Bytes(ctypes.Structure):  # rcutils_uint8_array_t (allocator unused by rmw_publish)
    _fields_ = [('buffer', ctypes.c_void_p), ('buffer_length', ctypes.c_size_t),
                ('buffer_capacity', ctypes.c_size_t), ('allocator', ctypes.c_void_p * 5)]


def _loaded(name: str) -> ctypes.CDLL:
    """Return the already loaded shared library ``name`` (the one rclpy uses)."""
    with open('/proc/self/maps') as f:
        for line in f:
            path = line.split()[-1]
            if path.endswith('/' + name):
                return ctypes.CDLL(path)
    raise RuntimeError(f'{name} is not loaded')


def oversize_request(request, field: str, extra: int) -> bytes:
    """
    Return ``request`` serialized with ``extra`` more zero bytes in its uint8 ``field``.

    ``field`` (dotted for a nested one: ``image.data``) must hold 16 bytes of 0xAB (a marker
    found in the CDR); ``extra`` a multiple of 8, so every later field keeps its CDR alignment.
    """
    value = request
    for name in field.split('.'):
        value = getattr(value, name)
    assert extra % 8 == 0 and bytes(value) == b'\xab' * 16
    cdr = serialize_message(request)
    mark = struct.pack('<I', 16) + b'\xab' * 16
    at = cdr.index(mark)
    return cdr[:at] + struct.pack('<I', 16 + extra) + b'\xab' * 16 + bytes(extra) + \
        cdr[at + len(mark):]


def oversize_string(msg, field: str, extra: int) -> bytes:
    """
    Return ``msg`` serialized with ``extra`` more characters in its string ``field``.

    ``field`` must hold ``'x' * 16`` (a marker found in the CDR: length 17 with the NUL);
    ``extra`` a multiple of 8, so every later field keeps its CDR alignment.
    """
    assert extra % 8 == 0 and getattr(msg, field) == 'x' * 16
    cdr = serialize_message(msg)
    mark = struct.pack('<I', 17) + b'x' * 16 + b'\0'
    at = cdr.index(mark)
    return cdr[:at] + struct.pack('<I', 17 + extra) + b'x' * (16 + extra) + b'\0' + \
        cdr[at + len(mark):]


class RawWriter:
    """An rmw publisher of ``msg_type`` messages on the DDS topic ``topic`` (e.g. ``rt/x``)."""

    def __init__(self, node: Node, msg_type, topic: str, depth: int = 1):
        msg_type.__class__.__import_type_support__()
        capsule = ctypes.py_object(msg_type._TYPE_SUPPORT)
        get = ctypes.pythonapi.PyCapsule_GetPointer
        get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        type_support = get(capsule, None)
        self.rcl = _loaded('librcl.so')
        self.rmw = _loaded('librmw_fastrtps_cpp.so')
        self.rcl.rcl_node_get_rmw_handle.restype = ctypes.c_void_p
        self.rcl.rcl_node_get_rmw_handle.argtypes = [ctypes.c_void_p]
        self.node = self.rcl.rcl_node_get_rmw_handle(ctypes.c_void_p(node.handle.pointer))
        # KEEP_LAST, RELIABLE, VOLATILE, AUTOMATIC liveliness; the name taken as it is.
        self.qos = _Qos(history=1, depth=depth, reliability=1, durability=2, liveliness=1,
                        avoid_ros_namespace_conventions=True)
        self.options = (ctypes.c_char * 64)()  # rmw_publisher_options_t, all defaults (0)
        create = self.rmw.rmw_create_publisher
        create.restype = ctypes.c_void_p
        create.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_char_p] + [ctypes.c_void_p] * 2
        topic = topic.encode()
        self.pub = create(self.node, type_support, topic, ctypes.addressof(self.qos),
                          ctypes.addressof(self.options))
        if not self.pub:
            raise RuntimeError(f'rmw_create_publisher({topic!r}) failed')

    def matched(self) -> int:
        """Return how many readers (e.g. the service's request reader) this writer matched."""
        n = ctypes.c_size_t(0)
        f = self.rmw.rmw_publisher_count_matched_subscriptions
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        if f(self.pub, ctypes.byref(n)) != 0:
            raise RuntimeError('rmw_publisher_count_matched_subscriptions failed')
        return n.value

    def write(self, cdr: bytes) -> None:
        """Write one message made of the CDR bytes ``cdr`` (header included)."""
        buf = ctypes.create_string_buffer(cdr, len(cdr))
        msg = _Bytes(buffer=ctypes.addressof(buf), buffer_length=len(cdr),
                     buffer_capacity=len(cdr))
        f = self.rmw.rmw_publish_serialized_message
        f.argtypes = [ctypes.c_void_p] * 3
        if f(self.pub, ctypes.addressof(msg), None) != 0:
            raise RuntimeError('rmw_publish_serialized_message failed')

    def close(self) -> None:
        if self.pub:
            f = self.rmw.rmw_destroy_publisher
            f.argtypes = [ctypes.c_void_p] * 2
            f(self.node, self.pub)
            self.pub = None


class RawRequestWriter(RawWriter):
    """An rmw publisher of ``srv_type`` requests on ``service``'s DDS request topic."""

    def __init__(self, node: Node, srv_type, service: str, depth: int = 1):
        super().__init__(node, srv_type.Request, f'rq{service}Request', depth)
