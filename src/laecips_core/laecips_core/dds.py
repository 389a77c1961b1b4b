# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
Fast DDS XML profiles: the environment that makes a process load one, on Jazzy and Kilted.

Fast DDS reads its default profiles file from an environment variable whose name changed:
2.x (ROS 2 Jazzy) reads only ``FASTRTPS_DEFAULT_PROFILES_FILE``, 3.x (Kilted) only
``FASTDDS_DEFAULT_PROFILES_FILE`` (its RMW still honours the old name, with a deprecation
warning at every start). A profile set under one name only is silently unused on the other
distro, so :func:`profile_env` sets both, except where Fast DDS 3 is known to be installed:
there only the new name (no warning).
"""

from __future__ import annotations

import os
from pathlib import Path

OLD_VAR = 'FASTRTPS_DEFAULT_PROFILES_FILE'  # Fast DDS 2.x (Jazzy)
NEW_VAR = 'FASTDDS_DEFAULT_PROFILES_FILE'  # Fast DDS 3.x (Kilted and later)
PROFILE_VARS = (OLD_VAR, NEW_VAR)
FASTDDS_2_DISTROS = ('humble', 'iron', 'jazzy')
SHM_PROFILE = 'fastdds_shm.xml'  # in config/: large camera frames between local processes


def fastdds_major(environ: dict | None = None) -> int | None:
    """Return the installed Fast DDS major version (2 or 3), None when it cannot be told."""
    env = os.environ if environ is None else environ
    distro = env.get('ROS_DISTRO', '')  # set by an apt install's setup.bash
    if distro:
        return 2 if distro in FASTDDS_2_DISTROS else 3
    from importlib import metadata
    for dist, major in (('ros-fastdds', 3), ('ros-fastrtps', 2)):  # the PyPI wheels
        try:
            metadata.version(dist)
            return major
        except metadata.PackageNotFoundError:
            continue
    return None


def profile_env(path: str | Path, environ: dict | None = None) -> dict[str, str]:
    """Return the variables that make Fast DDS 2.x or 3.x load the profile at ``path``."""
    names = (NEW_VAR,) if fastdds_major(environ) == 3 else PROFILE_VARS
    return {name: str(path) for name in names}


def profile_set(environ: dict | None = None) -> str | None:
    """Return the profiles file the environment already names (either variable), or None."""
    env = os.environ if environ is None else environ
    return env.get(NEW_VAR) or env.get(OLD_VAR) or None
