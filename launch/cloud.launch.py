# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The cloud side: the bridge (large labeller) and the trainer beside it, for all robots.

The nodes load the ``dds_profile`` argument's Fast DDS profile (config/fastdds_shm.xml
unless a profiles file is exported already): frames between the bridge and the trainer go
through shared memory.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from laecips_core import dds


def generate_launch_description():
    config = PathJoinSubstitution([FindPackageShare('laecips_bringup'), 'config'])
    use_sim_time = LaunchConfiguration('use_sim_time')
    return LaunchDescription([
        DeclareLaunchArgument('cloud_bridge_params',
                              default_value=PathJoinSubstitution([config, 'cloud_bridge.yaml']),
                              description='params YAML of the cloud bridge'),
        DeclareLaunchArgument('trainer_params',
                              default_value=PathJoinSubstitution([config, 'trainer.yaml']),
                              description='params YAML of the trainer'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='use /clock (bag replay with --clock)'),
        DeclareLaunchArgument('dds_profile', default_value=EnvironmentVariable(
            dds.NEW_VAR, default_value=EnvironmentVariable(
                dds.OLD_VAR, default_value=PathJoinSubstitution([config, dds.SHM_PROFILE]))),
            description='Fast DDS profile of the nodes (default: shared memory sized for '
            'camera frames, unless a profiles file is exported already)'),
        *[SetEnvironmentVariable(name, LaunchConfiguration('dds_profile'))
          for name in dds.profile_env('')],
        Node(
            package='laecips_cloud',
            executable='cloud_bridge',
            name='cloud_bridge',
            parameters=[LaunchConfiguration('cloud_bridge_params'),
                        {'use_sim_time': use_sim_time}],
            output='screen',
            emulate_tty=True,
        ),
        Node(
            package='laecips_cloud',
            executable='trainer',
            name='trainer',
            parameters=[LaunchConfiguration('trainer_params'), {'use_sim_time': use_sim_time}],
            output='screen',
            emulate_tty=True,
        ),
    ])
