# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
from setuptools import find_packages, setup

package_name = 'laecips_tools'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='LAECIPS-ROS developers',
    maintainer_email='laecips-ros@users.noreply.github.com',
    description=open('package.xml').read().split('<description>')[1].split('</description>')[0],
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'train_factory = laecips_tools.train_factory:main',
            'train_teacher = laecips_tools.train_teacher:main',
            'bench_corruptions = laecips_tools.bench_corruptions:main',
            'bench_edge = laecips_tools.bench_edge:main',
            'bench_cloud = laecips_tools.bench_cloud:main',
            'bench_fleet = laecips_tools.bench_fleet:main',
            'adapt_bench = laecips_tools.adapt_bench:main',
            'sam_download = laecips_tools.sam_download:main',
            'camvid_download = laecips_tools.camvid_download:main',
            'soak = laecips_tools.soak:main',
        ],
    },
)
