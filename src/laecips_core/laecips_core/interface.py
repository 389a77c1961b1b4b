# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The system's ROS interface as plain data: topic and service names, QoS profiles.

No rclpy here: ``laecips_ros.node.qos`` builds rclpy profiles from these descriptions, and
tools that only need a name (evaluate's recorder arguments, the benchmarks) read it here.
Names starting with ``~/`` are private to the node (``/<robot_id>/edge/...`` for the edge).
"""

from __future__ import annotations

from dataclasses import dataclass

# Camera (remappable per robot).
CAMERA = '/camera/image_raw'
# Robots -> cloud bridge (the only subscriber of a robot's uplink).
HARD_FRAMES = '/laecips/hard_frames'
# Cloud bridge -> robots and trainer.
CLOUD_LABELS = '/laecips/cloud_labels'
# Labelled hard frames, republished by the bridge for the trainer beside it: a robot's frame
# then crosses its uplink once (to the bridge) instead of once per cloud subscriber.
CLOUD_FRAMES = '/laecips/cloud/frames'
# Statistics: one EdgeStats per robot, CloudStats from the bridge.
EDGE_STATS = '/laecips/stats'
CLOUD_STATS = '/laecips/stats_cloud'
# Trainer: every completed push.
WEIGHT_PUSHES = '/laecips/weight_pushes'

# The edge node's own topics and service (in the robot's namespace).
EDGE_MASK = '~/mask'
EDGE_MASK_COLOR = '~/mask_color'
EDGE_OVERLAY = '~/overlay'
EDGE_MASK_REFINED = '~/mask_refined'
EDGE_MASK_REFINED_COLOR = '~/mask_refined_color'
# laecips_msgs/ClassMap of the masks (names, colours, void id), latched (CLASS_MAP).
EDGE_CLASS_MAP = '~/class_map'
UPDATE_WEIGHTS = '~/update_weights'
# How the trainer finds a robot's update service ({robot_id} is replaced).
UPDATE_SERVICE_PATTERN = '/{robot_id}/edge/update_weights'


def edge_topic(robot_id: str, name: str) -> str:
    """Return the absolute name of one of a robot's edge topics (``name`` as ``~/mask``)."""
    return f'/{robot_id}/edge/{name.removeprefix("~/")}'


@dataclass(frozen=True)
class Qos:
    """A QoS profile as data: keep-last ``depth``, reliability and durability by name."""

    depth: int
    reliability: str = 'reliable'  # 'reliable' | 'best_effort'
    durability: str = 'volatile'  # 'volatile' | 'transient_local'


# The edge's outputs and its link to the cloud.
EDGE_OUT = Qos(5)
EDGE_LINK = Qos(10)
# The trainer's inputs and pushes: deeper, it may be busy training.
TRAINER = Qos(50)
# Camera frames: sensor_data = best effort, volatile, keep last (rclpy's profile, our depth).


def camera_qos(depth: int, mode: str) -> Qos:
    """Return the camera subscription's profile: ``mode`` 'sensor_data' or 'reliable'."""
    return Qos(depth, 'reliable' if mode == 'reliable' else 'best_effort')
# Statistics topics (keep last 10, as rclpy's plain depth 10).
STATS = Qos(10)
# Published once, kept for late subscribers (transient local, keep last 1): the class map.
LATCHED = Qos(1, 'reliable', 'transient_local')
