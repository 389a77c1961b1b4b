# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The cloud bridge with a labeller that can be swapped for a wrong one while it runs.

ESPNet-C, except while the file named by $LAECIPS_TEST_SWITCH exists: then it labels what a
camera at very high gain would show it (strong sensor noise), i.e. it turns into a labeller
out of its depth on this stream. The test creates and removes the file.
"""

import os

from laecips_cloud import bridge_node
from laecips_cloud.labellers import register
from laecips_cloud.labellers.espnet_c import EspnetCLabeller
from laecips_core import corruptions


class Switching(EspnetCLabeller):
    name = 'switching'

    def label_with_confidence(self, images, edge_labels=None):
        if os.path.exists(os.environ['LAECIPS_TEST_SWITCH']):
            images = [corruptions.sensor_noise(im, 0.25, i) for i, im in enumerate(images)]
        return super().label_with_confidence(images, edge_labels)


if __name__ == '__main__':
    register('switching', Switching)
    bridge_node.main()
