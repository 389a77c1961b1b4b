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

:func:`capped_profile` caps what one service's requests may cost a process in memory (#17
defect 3). Fast DDS reassembles a fragmented sample into a buffer of the size the sample
declares, and rclpy then converts it whole, before any check of the node runs: one 200 MiB
request grew an edge by ~800 MiB. The one per-reader bound Fast DDS has is the PREALLOCATED
history memory policy: every payload has the type's maximum serialized size, and a change
declaring more is refused when its first fragment arrives (Fast DDS 2.14 and 3.2
``ReaderHistory::can_change_be_added_nts``: logged, marked irrelevant, no memory taken). So
the request type must be bounded (``UpdateWeights.srv``), and rmw_fastrtps applies a reader's
memory policy from XML only with ``RMW_FASTRTPS_USE_QOS_FROM_XML=1``, for the whole process:
the profile then restates for every other endpoint what rmw_fastrtps sets itself otherwise
(PREALLOCATED_WITH_REALLOC histories, data sharing off, its publication mode).

The hard-frame readers of the bridge and the trainer, the label readers of the edges and
the trainer, and the edges' readers of the bridge's stats are capped the same way (bounded
``HardFrame``, ``CloudLabel``, ``CloudStats``; rmw_fastrtps names a topic reader's profile
by its ROS topic name, e.g. ``/laecips/hard_frames``, where a service's request reader goes
by its DDS request topic, :func:`request_topic`): a peer's
200 MiB hard frame grew a bridge by as much before its node refused it, a 200 MiB label an
edge by over 330 MiB. A preallocated history reserves the type's bound per sample it holds
(virtual memory; pages count as resident once a sample used them), so the worst a peer can
make a capped reader hold is its history depth times that bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
import os
from pathlib import Path
import sys
import tempfile
import xml.etree.ElementTree as ET

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


QOS_FROM_XML = 'RMW_FASTRTPS_USE_QOS_FROM_XML'
PUBLICATION_MODE = 'RMW_FASTRTPS_PUBLICATION_MODE'
CAPPED_VAR = 'LAECIPS_DDS_CAPPED'  # the request topics a process capped (for its own check)
FASTDDS_NS = 'http://www.eprosima.com'
GROWING = 'PREALLOCATED_WITH_REALLOC'  # what rmw_fastrtps sets on every endpoint by default
CAPPED = 'PREALLOCATED'


def msg_bound(cls: type, field: str) -> int:
    """Return the most elements (bytes, characters) a generated message allows in ``field``."""
    return cls.SLOT_TYPES[cls.__slots__.index('_' + field)].maximum_size


def request_topic(service: str) -> str:
    """Return the DDS topic rmw_fastrtps carries a service's requests on (its profile name)."""
    return f'rq{service}Request'


def _remap_rules(argv: list[str]) -> list[str]:
    """Return the ``-r``/``--remap`` rules of the ``--ros-args`` sections of ``argv``."""
    rules, in_ros, it = [], False, iter(argv)
    for arg in it:
        if arg == '--ros-args':
            in_ros = True
        elif arg == '--':
            in_ros = False
        elif in_ros and arg in ('-r', '--remap'):
            rules.append(next(it, ''))
    return rules


def ros_names(argv: list[str], name: str, namespace: str = '/') -> tuple[str, str]:
    """
    Return a node's (namespace, name) after the remap rules in ``argv``.

    The profile must name the request topic before the node (and its DDS participant, which
    reads the profiles) exists, so the ``-r [node:]__ns:=`` / ``__node:=`` rules of the
    ``--ros-args`` sections are read here the way rcl reads them.
    """
    rules = _remap_rules(argv)
    new_name, new_ns = name, namespace
    for rule in rules:
        target, sep, value = rule.partition(':=')
        if not sep:
            continue
        if ':' in target:
            node, _, target = target.partition(':')
            if node != name:
                continue
        if target in ('__node', '__name'):
            new_name = value
        elif target == '__ns':
            new_ns = value if value.startswith('/') else '/' + value
    return new_ns, new_name


def _expand(topic: str, namespace: str, name: str) -> str:
    """Return ``topic`` as a fully qualified name for a node ``name`` in ``namespace``."""
    base = namespace.rstrip('/')
    if topic.startswith('/'):
        return topic
    if topic == '~' or topic.startswith('~/'):
        return f'{base}/{name}{topic[1:]}'
    return f'{base}/{topic}'


def remapped(argv: list[str], name: str, topic: str, namespace: str = '/') -> str:
    """
    Return the name the node ``name`` will use for ``topic`` after the rules in ``argv``.

    A capped reader's profile is looked up by the topic's final name, so a node whose topic
    is remapped (e.g. one bridge per shard of robots, ``-r /laecips/hard_frames:=/shard2/...``)
    must name the remapped topic. Read as rcl does: node-specific rules (``node:from:=to``,
    matched against the node's name after ``__node``) and global ones, both sides expanded
    in the node's namespace, the first matching rule wins.
    """
    ns, node = ros_names(argv, name, namespace)
    full = _expand(topic, ns, node)
    for rule in _remap_rules(argv):
        target, sep, value = rule.partition(':=')
        if ':' in target:  # node:from:=to, for the node's final name (as rcl resolves)
            only, _, target = target.partition(':')
            if only != node:
                continue
        if not sep or target.startswith('__'):  # __ns, __node: ros_names
            continue
        if _expand(target, ns, node) == full:
            return _expand(value, ns, node)
    return full


def final_names(args: list[str] | None, name: str, topics: Iterable[str]) -> list[str]:
    """
    Return the final names of ``topics`` (topic or service names) for the node ``name``.

    ``args``: its command line (None: ``sys.argv``, as a ``main()`` gets them). A capped
    reader must be named this way before the node exists (:func:`remapped`).
    """
    argv = sys.argv if args is None else args
    return [remapped(argv, name, t) for t in topics]


def _child(parent: ET.Element, tag: str) -> ET.Element:
    """Return ``parent``'s child ``tag`` (in the Fast DDS namespace), made if missing."""
    ns = parent.tag[:parent.tag.index('}') + 1] if parent.tag.startswith('{') else ''
    found = parent.find(ns + tag)
    return found if found is not None else ET.SubElement(parent, ns + tag)


def _set(parent: ET.Element, path: str, value: str, keep: bool = False) -> None:
    """Set the text at ``path`` (slash-separated) below ``parent``; ``keep`` an existing one."""
    node = parent
    for tag in path.split('/'):
        node = _child(node, tag)
    if not (keep and (node.text or '').strip()):
        node.text = value


def _default(profiles: ET.Element, tag: str, name: str) -> ET.Element:
    """Return the default ``tag`` profile (participant, data_writer, ...), made if missing."""
    ns = profiles.tag[:profiles.tag.index('}') + 1] if profiles.tag.startswith('{') else ''
    for el in profiles.findall(ns + tag):
        if el.get('is_default_profile') == 'true':
            return el
    return ET.SubElement(profiles, ns + tag, profile_name=name, is_default_profile='true')


def capped_profile(topics: list[str], base: str | None = None,
                   environ: dict | None = None) -> str:
    """
    Return a profiles document capping the readers of ``topics`` at their type's bound.

    A topic is a profile name rmw_fastrtps looks up: a service's DDS request topic
    (:func:`request_topic`) or a ROS topic name (``/laecips/hard_frames``).

    ``base`` is the text of the profiles file the process would load otherwise (kept: its
    transports, flow controllers, publish modes). Every other endpoint keeps what
    rmw_fastrtps gives it without ``RMW_FASTRTPS_USE_QOS_FROM_XML``: growing histories (also
    discovery's), data sharing off, and the publication mode ``RMW_FASTRTPS_PUBLICATION_MODE``
    asks for (SYNCHRONOUS when unset; AUTO keeps the base's own).
    """
    env = os.environ if environ is None else environ
    ET.register_namespace('', FASTDDS_NS)
    if base:
        root = ET.fromstring(base)
    else:
        root = ET.Element(f'{{{FASTDDS_NS}}}dds')
    profiles = root if root.tag.endswith('profiles') else _child(root, 'profiles')
    builtin = _child(_child(_default(profiles, 'participant', 'laecips_participant'), 'rtps'),
                     'builtin')
    _set(builtin, 'readerHistoryMemoryPolicy', GROWING)
    _set(builtin, 'writerHistoryMemoryPolicy', GROWING)
    mode = env.get(PUBLICATION_MODE, '') or 'SYNCHRONOUS'
    writer = _default(profiles, 'data_writer', 'laecips_writer')
    if mode in ('SYNCHRONOUS', 'ASYNCHRONOUS'):
        _set(writer, 'qos/publishMode/kind', mode)
    _set(writer, 'qos/data_sharing/kind', 'OFF', keep=True)
    _set(writer, 'historyMemoryPolicy', GROWING)
    reader = _default(profiles, 'data_reader', 'laecips_reader')
    _set(reader, 'qos/data_sharing/kind', 'OFF', keep=True)
    _set(reader, 'historyMemoryPolicy', GROWING)
    ns = profiles.tag[:profiles.tag.index('}') + 1] if profiles.tag.startswith('{') else ''
    for topic in topics:
        capped = ET.SubElement(profiles, ns + 'data_reader', profile_name=topic)
        _set(capped, 'qos/data_sharing/kind', 'OFF')
        # One payload reserved up front (each is the type's whole bound), more as needed.
        _set(capped, 'topic/resourceLimitsQos/allocated_samples', '1')
        _set(capped, 'historyMemoryPolicy', CAPPED)
    return ET.tostring(root, encoding='unicode')


def cap_requests(topics: list[str], path: str | Path,
                 environ: dict | None = None) -> dict[str, str]:
    """
    Write :func:`capped_profile` (over the profile the environment names) to ``path``.

    Return the variables that make this process load it; set them before the process's
    first node (its DDS participant reads the profiles once).
    """
    env = os.environ if environ is None else environ
    base = profile_set(env)
    Path(path).write_text(capped_profile(topics, Path(base).read_text() if base else None, env))
    return {**profile_env(path, env), QOS_FROM_XML: '1', CAPPED_VAR: ' '.join(topics)}


@contextmanager
def capped_process(topics: list[str], name: str) -> Iterator[None]:
    """
    Make this process load a profile capping ``topics`` while the block runs.

    Enter it before the process's first node (its DDS participant reads the profiles once);
    the profile is a temporary file named after ``name``, removed at the end.
    """
    fd, path = tempfile.mkstemp(prefix=f'laecips-{name}-dds-', suffix='.xml')
    os.close(fd)
    try:
        os.environ.update(cap_requests(topics, path))
        yield
    finally:
        os.unlink(path)


def capped(topic: str, environ: dict | None = None) -> bool:
    """Return whether this process loaded a profile capping ``topic``'s reader."""
    env = os.environ if environ is None else environ
    return env.get(QOS_FROM_XML) == '1' and topic in env.get(CAPPED_VAR, '').split()
