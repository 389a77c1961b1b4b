# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The whole system on one machine: an edge node for one robot, the cloud bridge, the trainer."""

from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    launch_dir = PathJoinSubstitution([FindPackageShare('laecips_bringup'), 'launch'])
    # Arguments (robot_id, camera_topic, *_params, use_sim_time, dds_profile, rviz) pass
    # through to both.
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(
            PathJoinSubstitution([launch_dir, 'edge.launch.py']))),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(
            PathJoinSubstitution([launch_dir, 'cloud.launch.py']))),
    ])
