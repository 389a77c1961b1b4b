# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""config/*.yaml name every parameter each node declares, each with a comment, and no more."""

from pathlib import Path

import pytest
import yaml

from laecips_cloud.bridge_node import PARAMS as BRIDGE
from laecips_cloud.trainer_node import TrainerNode
from laecips_edge.edge_node import EdgeNode

CONFIG = Path(__file__).resolve().parents[1] / 'config'


@pytest.mark.parametrize('name,params', [('edge.yaml', EdgeNode.PARAMS),
                                         ('cloud_bridge.yaml', BRIDGE),
                                         ('trainer.yaml', TrainerNode.PARAMS)])
def test_params_file_matches_node(name, params):
    text = (CONFIG / name).read_text()
    values = yaml.safe_load(text)['/**']['ros__parameters']
    assert set(values) == set(params), 'regenerate with: python scripts/gen_config.py'
    lines = text.splitlines()
    for key, (default, *_) in params.items():
        i = next(i for i, ln in enumerate(lines) if ln.strip().startswith(f'{key}:'))
        assert lines[i - 1].strip().startswith('#'), f'{name}: {key} has no comment'
        assert type(values[key]) is type(default), f'{name}: {key} has the wrong type'
