# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
The edge's final pushed weights, scored after a run on the bag's own frames (no rclpy).

An evaluation of a system with a trainer gives its edge a ``state_dir``: the edge persists
every accepted push there. Afterwards the weights in it are scored alone (no base model,
no statistics adapted on the robot) on every phase of the bag: whether adapting to the
drift cost the clean conditions (forgetting), which the per-frame scores during the run
cannot show once the stream has moved on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from laecips_core import metrics, weights
from laecips_eval import bags
from laecips_eval.camvid_to_bag import CAMERA_TOPIC, GT_TOPIC, parse_gt_frame_id


def score(state_dir: str | Path, bag: str | Path) -> dict[str, float]:
    """Return mIoU (%) per phase of the weights saved in ``state_dir``; {} without any."""
    from rosbags.rosbag2 import Reader

    from laecips_edge import engine

    state = weights.load_state(state_dir)
    if state is None:
        return {}
    sd, meta, _ = state
    seg = engine.Segmenter(meta, sd, engine.Options(jit=False))
    store = bags.typestore()
    images: dict[int, np.ndarray] = {}
    gts: dict[int, tuple[str, np.ndarray]] = {}
    conf: dict[str, np.ndarray] = {}
    with Reader(Path(bag)) as r:
        conns = [c for c in r.connections if c.topic in (CAMERA_TOPIC, GT_TOPIC)]
        for conn, _, raw in r.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            if conn.topic == GT_TOPIC:
                gts[stamp] = (parse_gt_frame_id(msg.header.frame_id)[0], bags.image_array(msg))
            else:
                images[stamp] = np.ascontiguousarray(bags.image_array(msg))
            if stamp in images and stamp in gts:
                phase, gt = gts.pop(stamp)
                mask = seg.infer(images.pop(stamp)).mask
                c = metrics.confusion(mask, gt)
                conf[phase] = conf[phase] + c if phase in conf else c
    return {p: metrics.miou(c) * 100 for p, c in conf.items()}
