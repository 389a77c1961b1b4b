# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The robot side: one edge node in the robot's namespace (robot id = namespace)."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


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
    ])
