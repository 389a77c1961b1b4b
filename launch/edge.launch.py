# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The robot side: one edge node in the robot's namespace (robot id = namespace).

Camera frames reach the edge through Fast DDS shared memory sized for them: the nodes load
the ``dds_profile`` argument's profile (config/fastdds_shm.xml unless a profiles file is
exported already); start the camera driver with the same (see the README). ``rviz:=true``
also starts RViz with config/laecips.rviz.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from laecips_core import dds


def generate_launch_description():
    config = PathJoinSubstitution([FindPackageShare('laecips_bringup'), 'config'])
    robot_id = LaunchConfiguration('robot_id')
    use_sim_time = LaunchConfiguration('use_sim_time')
    return LaunchDescription([
        DeclareLaunchArgument('robot_id', default_value='robot1',
                              description='robot id; the edge node runs in this namespace'),
        DeclareLaunchArgument('edge_params',
                              default_value=PathJoinSubstitution([config, 'edge.yaml']),
                              description='params YAML of the edge node'),
        DeclareLaunchArgument('camera_topic', default_value='/camera/image_raw',
                              description='camera topic (sensor_msgs/Image or compressed)'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='use /clock (bag replay with --clock)'),
        DeclareLaunchArgument('dds_profile', default_value=EnvironmentVariable(
            dds.NEW_VAR, default_value=EnvironmentVariable(
                dds.OLD_VAR, default_value=PathJoinSubstitution([config, dds.SHM_PROFILE]))),
            description='Fast DDS profile of the nodes (default: shared memory sized for '
            'camera frames, unless a profiles file is exported already)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='also start RViz with config/laecips.rviz'),
        *[SetEnvironmentVariable(name, LaunchConfiguration('dds_profile'))
          for name in dds.profile_env('')],
        Node(
            package='laecips_edge',
            executable='edge_node',
            name='edge',
            namespace=robot_id,
            parameters=[LaunchConfiguration('edge_params'), {'use_sim_time': use_sim_time}],
            remappings=[('/camera/image_raw', LaunchConfiguration('camera_topic'))],
            output='screen',
            emulate_tty=True,
        ),
        Node(
            package='rviz2',
            executable='rviz2',
            name='rviz',
            arguments=['-d', PathJoinSubstitution([config, 'laecips.rviz'])],
            condition=IfCondition(LaunchConfiguration('rviz')),
        ),
    ])
