# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
import glob
import os

from setuptools import find_packages, setup

package_name = 'laecips_bringup'

# launch/ and config/ live at the workspace top; install them into this package's share/.
_top = os.path.join('..', '..')
DATA_FILES = [
    ('share/' + package_name + '/' + d,
     sorted(f for f in glob.glob(os.path.join(_top, d, '*')) if os.path.isfile(f)))
    for d in ('launch', 'config')
]

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ] + DATA_FILES,
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='LAECIPS-ROS developers',
    maintainer_email='laecips-ros@users.noreply.github.com',
    description=open('package.xml').read().split('<description>')[1].split('</description>')[0],
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'laecips = laecips_bringup.cli:main',
        ],
    },
)
