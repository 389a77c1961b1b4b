# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
What every LAECIPS node does the same way: declare its parameters, build QoS, run.

A node keeps a ``PARAMS`` table (name: (default, description) or (default, description,
(min, max))); ``declare_params`` declares it and returns the values, ``qos`` turns a
``laecips_core.interface.Qos`` into an rclpy profile, and ``run_node`` is a node module's
``main()``.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from laecips_core import dds
from laecips_core.interface import Qos

# name: (default, description) or (default, description, (min, max)): a numeric range,
# inclusive, that the value must lie in (ros2 param describe shows it).
Params = dict[str, tuple]


def describe(default: object, text: str, limits: tuple | None = None,
             read_only: bool = True, dynamic_typing: bool = True) -> ParameterDescriptor:
    """Return the ParameterDescriptor of one table entry (with its range, if any)."""
    d = ParameterDescriptor(description=text, read_only=read_only,
                            dynamic_typing=dynamic_typing)
    if limits is not None:
        lo, hi = limits
        if isinstance(default, int) and not isinstance(default, bool):
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        elif isinstance(default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(lo),
                                                         to_value=float(hi), step=0.0)]
        else:
            raise TypeError(f'a range needs a numeric default, not {default!r}')
        d.additional_constraints = f'{lo} <= value <= {hi}'
    return d


def check_range(name: str, value: object, limits: tuple | None) -> None:
    """Raise ValueError when ``value`` lies outside ``limits`` (min, max), both included."""
    if limits is not None and not limits[0] <= value <= limits[1]:
        raise ValueError(f'parameter {name} must be in [{limits[0]}, {limits[1]}], '
                         f'not {value!r}')


def declare_params(node: Node, table: Params, dynamic: bool = True) -> dict:
    """
    Declare every parameter of ``table`` on ``node`` and return their values by name.

    ``dynamic``: read-only, dynamically typed, then cast to the default's type, so that
    ``-p stats_period:=1`` (an int) or ``-p jit:=False`` (a string) does not kill the node.
    Otherwise the parameters are typed by their defaults, writable, and returned as given.
    A value outside its entry's range raises ValueError (``jpeg_quality:=150``), at start
    and, for writable parameters, rclpy refuses a ``ros2 param set`` out of range.
    """
    out = {}
    for name, entry in table.items():
        default, text, limits = (*entry, None)[:3]
        try:
            node.declare_parameter(name, default, describe(
                default, text, limits, read_only=dynamic, dynamic_typing=dynamic))
        except InvalidParameterValueException as e:  # rclpy's own range check (typed)
            where = f' must be in [{limits[0]}, {limits[1]}]' if limits else ''
            raise ValueError(f'parameter {name}{where}: {e}') from None
        value = node.get_parameter(name).value
        if dynamic:
            if isinstance(default, bool) and isinstance(value, str):
                value = value.strip().lower() in ('1', 'true', 'yes', 'on')
            value = type(default)(default if value is None else value)
        check_range(name, value, limits)
        out[name] = value
    return out


def check_choices(p: dict, choices: dict[str, tuple[str, ...]]) -> None:
    """Raise ValueError for a parameter whose value is not one of its allowed ones."""
    for name, allowed in choices.items():
        if p[name] not in allowed:
            raise ValueError(f'parameter {name} must be one of {allowed}, not {p[name]!r}')


def qos(profile: Qos) -> QoSProfile:
    """Return the rclpy profile of an interface QoS description."""
    return QoSProfile(
        depth=profile.depth,
        reliability=(ReliabilityPolicy.RELIABLE if profile.reliability == 'reliable'
                     else ReliabilityPolicy.BEST_EFFORT),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if profile.durability == 'transient_local'
                    else DurabilityPolicy.VOLATILE))


def log_read_cap(node: Node, topic: str, msg_type: type) -> None:
    """Log whether DDS caps the ``msg_type`` messages ``node`` reads on ``topic`` (dds)."""
    name, kind = node.resolve_topic_name(topic), msg_type.__name__
    if dds.capped(name):
        node.get_logger().info(f"{name}: a {kind} over its type's bound is dropped by DDS "
                               'before it takes memory')
    else:  # e.g. main() not used: a message is then reassembled whatever its size
        node.get_logger().warning(f'{topic}: no Fast DDS cap on {name}: an oversize {kind} is '
                                  'reassembled whole before it is checked')


@contextlib.contextmanager
def ros_session(args: list[str] | None = None) -> Iterator[list[Node]]:
    """
    Init rclpy; yield a list to append the session's nodes to; always destroy and shut down.

    For a node module whose ``main()`` is not a plain spin (the recorder, the replay).
    """
    rclpy.init(args=args)
    made: list[Node] = []
    try:
        yield made
    finally:
        for node in made:
            node.destroy_node()
        rclpy.try_shutdown()


def interrupted(exc: BaseException) -> bool:
    """
    Whether ``exc`` came from a stop: Ctrl-C, SIGTERM or a shutdown, not a fault.

    True when a KeyboardInterrupt or ExternalShutdownException is ``exc`` or in its chain
    (a SIGINT that lands while rclpy's C code builds a message comes back as the binding's
    own error, the interrupt its cause), or once the default context is shut down: rclpy's
    SIGINT handler shuts it down first, and a callback still running or queued then fails
    with "context is invalid" (a trainer publishing a push result, say).
    """
    if not rclpy.ok():
        return True
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, (KeyboardInterrupt, ExternalShutdownException)):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def run_node(make: Callable[[], Node], args: list[str] | None = None) -> None:
    """
    Run one node until Ctrl-C or shutdown: a node module's ``main()``.

    One SingleThreadedExecutor: every callback of our nodes is short (long work has its
    own threads); rclpy's MultiThreadedExecutor spun hot on a 2-core robot (in-node rate
    2-4 frames/s closed loop against ~100 with this; ``laecips bench-edge``). The node's
    ``close()`` (stopping its threads) runs before it is destroyed, whatever happened.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = make()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except BaseException as e:
        if not interrupted(e):
            raise
    finally:
        if node is not None:
            if hasattr(node, 'close'):
                node.close()
            node.destroy_node()
        rclpy.try_shutdown()
