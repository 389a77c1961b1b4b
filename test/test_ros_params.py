# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""laecips_ros.node.declare_params: types, read-only, and ranges (jpeg_quality:=150 refused)."""

import pytest
import rclpy
from rclpy.parameter import Parameter

from laecips_ros.node import declare_params

TABLE = {
    'quality': (90, 'JPEG quality', (1, 100)),
    'period': (1.0, 'seconds', (0.05, 60.0)),
    'name': ('x', 'free text'),
    'flag': (False, 'a switch'),
}


@pytest.fixture
def make_node():
    context = rclpy.Context()
    rclpy.init(context=context)
    made = []

    def make(**overrides):
        node = rclpy.create_node(
            f'params_{len(made)}', context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        made.append(node)
        return node
    yield make
    for node in made:
        node.destroy_node()
    rclpy.try_shutdown(context=context)


@pytest.mark.parametrize('dynamic', [True, False])
def test_values_in_range_are_taken(make_node, dynamic):
    p = declare_params(make_node(quality=100, period=0.05, flag=True), TABLE, dynamic=dynamic)
    assert p == {'quality': 100, 'period': 0.05, 'name': 'x', 'flag': True}


@pytest.mark.parametrize('dynamic', [True, False])
@pytest.mark.parametrize('bad', [{'quality': 150}, {'quality': 0}, {'period': 61.0},
                                 {'period': 0.0}])
def test_values_out_of_range_are_refused_at_start(make_node, dynamic, bad):
    with pytest.raises(ValueError, match=f'parameter {next(iter(bad))}'):
        declare_params(make_node(**bad), TABLE, dynamic=dynamic)


def test_dynamic_typing_is_range_checked_after_the_cast(make_node):
    # -p period:=100 is an int: cast to float, then checked (rclpy checks only its own type).
    with pytest.raises(ValueError, match=r'period must be in \[0.05, 60.0\]'):
        declare_params(make_node(period=100), TABLE)
    assert declare_params(make_node(period=2), TABLE)['period'] == 2.0


def test_ranges_are_described_and_enforced_on_set(make_node):
    node = make_node()
    declare_params(node, TABLE, dynamic=False)
    d = node.describe_parameter('quality')
    assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (1, 100)
    assert node.describe_parameter('period').floating_point_range[0].to_value == 60.0
    assert not node.describe_parameter('name').integer_range
    assert not node.set_parameters([Parameter('quality', value=150)])[0].successful
    assert node.set_parameters([Parameter('quality', value=50)])[0].successful
    ro = make_node()
    declare_params(ro, TABLE)  # dynamic: read-only
    assert ro.describe_parameter('quality').read_only
    assert not ro.set_parameters([Parameter('quality', value=50)])[0].successful
