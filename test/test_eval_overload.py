# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The overload figure's arithmetic over a recorded run (laecips_eval.overload.figure)."""

import math

from laecips_eval.overload import figure


def _frame(source: str, delay: float) -> dict:
    return {'source': source, 'cloud_delay_s': delay}


def test_figure_counts_in_time_and_cloud_final_masks():
    # 10 frames at 5 Hz (2 s of stream): 4 refined masks, 3 within the 1 s deadline (the
    # recorder made those the final mask), 1 late; 6 frames kept the edge's mask.
    frames = ([_frame('cloud', 0.4), _frame('cloud', 0.9), _frame('cloud', 1.0),
               _frame('edge', 1.7)] + [_frame('edge', math.nan)] * 6)
    run = {'frames': frames, 'totals': {'hard_frames': 10, 'labels': 5, 'labels_training': 1},
           'cloud_stats': {'labelled_in_time': 3, 'labelled_late': 1,
                           'labelled_for_training': 1, 'dropped_queue': 5, 'rejected': 0,
                           'frames_in': 10}}
    f = figure(run, n_frames=10, rate=5.0, deadline=1.0)
    assert f['in_deadline_ratio'] == 0.75
    assert f['refined_in_time_per_s'] == 1.5
    assert (f['labelled_in_time'], f['labelled_for_training'], f['dropped']) == (3, 1, 5)
    assert math.isnan(figure({'frames': [_frame('edge', math.nan)], 'totals': {
        'hard_frames': 1, 'labels': 0}}, 1, 1.0, 1.0)['in_deadline_ratio'])
