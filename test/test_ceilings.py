# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""The oracles that bound #15's goal: seen dusk only when asked, and never shipped."""

import pytest
import torch

from laecips_core import camvid as cv
from laecips_tools import adapt_bench, train_factory

TINY = {'ltd': (8, 8, 8), 'gfe': (8, 8, 8), 'blocks': (1, 1, 1), 'fuse': 8, 'expand': 1}


def test_oracle_training_sees_the_dusk_drive_only_when_asked(camvid):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, meta, info = train_factory.train(
            camvid, 0.01, batch=2, max_wall_minutes=0.2, log=lambda s: None, arch_cfg=TINY,
            input_size=(45, 60), max_frames=24, role='oracle (dusk seen)',
            sequences=cv.DAY_TRAIN + (cv.DUSK,))
    finally:
        torch.set_num_threads(threads)
    assert cv.DUSK in info['train_sequences']
    assert 'oracle' in meta.training_data and cv.DUSK in meta.training_data


def test_an_oracle_never_overwrites_the_factory_model(capsys):
    with pytest.raises(SystemExit) as e:
        train_factory.main(['--oracle-dusk'])
    assert e.value.code == 2 and 'give --out' in capsys.readouterr().err


@pytest.mark.parametrize('extra', [['--mode', 'online'], ['--soft-weight', '0.5']])
def test_ground_truth_labels_are_an_offline_hard_label_oracle(extra, capsys):
    with pytest.raises(SystemExit) as e:
        adapt_bench.main(['--labels', 'gt', *extra])
    assert e.value.code == 2 and 'offline mode, hard labels only' in capsys.readouterr().err


@pytest.mark.parametrize('cfg', ['not json', '[1, 2]'])
def test_a_bad_arch_cfg_is_refused_before_training(cfg, capsys):
    with pytest.raises(SystemExit) as e:
        train_factory.main(['--arch-cfg', cfg, '--out', 'unused.safetensors'])
    assert e.value.code == 2 and '--arch-cfg' in capsys.readouterr().err
