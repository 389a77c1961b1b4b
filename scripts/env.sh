# Copyright 2026 LAECIPS-ROS developers. Licensed under the Apache License, Version 2.0.
#
# Source after scripts/setup.sh: the venv, the colcon workspace, and the variables that
# pip-installed ROS 2 needs.
_laecips_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# LAECIPS_ROS_DISTRO picks the venv and install folder scripts/setup.sh made for it.
_laecips_suffix=""
[ "${LAECIPS_ROS_DISTRO:-jazzy}" = jazzy ] || _laecips_suffix="-$LAECIPS_ROS_DISTRO"
_laecips_venv="${LAECIPS_VENV:-$_laecips_root/.venv$_laecips_suffix}"
# shellcheck disable=SC1091
source "$_laecips_venv/bin/activate"
# shellcheck disable=SC1091
source "$_laecips_root/install$_laecips_suffix/setup.bash"
# colcon's setup.bash drops the venv from AMENT_PREFIX_PATH; ament_index needs it.
export AMENT_PREFIX_PATH="$AMENT_PREFIX_PATH:$_laecips_venv"
export LAECIPS_ROOT="$_laecips_root"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
unset _laecips_root _laecips_venv _laecips_suffix
