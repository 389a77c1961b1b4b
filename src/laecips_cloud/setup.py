# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
from glob import glob

from setuptools import find_packages, setup

package_name = 'laecips_cloud'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        # The robust teacher and its training report (laecips train-teacher writes them).
        ('share/' + package_name + '/weights', glob('weights/*.safetensors')
         + glob('weights/*.json')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='LAECIPS-ROS developers',
    maintainer_email='laecips-ros@users.noreply.github.com',
    description=open('package.xml').read().split('<description>')[1].split('</description>')[0],
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'cloud_bridge = laecips_cloud.bridge_node:main',
            'trainer = laecips_cloud.trainer_node:main',
        ],
    },
)
