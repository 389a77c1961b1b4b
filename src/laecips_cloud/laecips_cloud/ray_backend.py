# Copyright 2026 LAECIPS-ROS developers
# SPDX-License-Identifier: Apache-2.0
"""
``backend: ray``: the bridge's labeller is a Ray Serve deployment; the bridge is its ROS gateway.

``RayLabeller`` is a ``laecips_cloud.labellers.Labeller`` like the in-process ones (same
``label_with_confidence`` and return types), so the bridge picks it by its ``backend``
parameter and everything around the call (scheduling, bounded decoding and frame checks,
teacher calibration and health, signing) is the same for both backends. Each frame is one
Serve request; the replicas (``laecips_cloud.ray_replica``) batch requests with
``@serve.batch``. At most ``ray_max_in_flight`` requests are outstanding at once over all
threads calling the labeller. A request whose replica died is sent again (Serve routes it to
a live replica) up to ``ray_retries`` times; a frame that still has no answer comes back as
``None`` in its slot and is counted in ``counters['failed']``, so the caller drops and counts it.

``ray_address``: ``auto`` (the cluster this machine belongs to, ``ray start``), ``host:port``
or ``ray://host:port`` (Ray Client), or empty: start a local Ray on this machine, on the
loopback address only, shut down again with the bridge (``connect``; the trainer's too).
Bridges naming the same ``ray_app`` on one cluster share its replicas
(robots sharded across bridges); the first one deploys it. ray is imported on first use: the
in-process backend never imports it.
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Callable, Sequence

import numpy as np

from laecips_cloud.labellers import Labeller

# name: (default, description[, (min, max)]) -- merged into the bridge's PARAMS table.
PARAMS = {
    'backend': ('local', "labeller backend: 'local' (in the bridge's process) or 'ray' "
                         '(a Ray Serve deployment; the ray_* parameters)'),
    'ray_address': ('', "Ray cluster: 'auto', 'host:port' or 'ray://host:port'; empty: "
                        'start a local Ray on this machine'),
    'ray_app': ('laecips_labeller', 'Serve application name; bridges naming the same one '
                                    'share its replicas'),
    'ray_replicas': (1, 'labeller replicas (the autoscaling minimum when ray_max_replicas '
                        'is larger)', (1, 100000)),
    'ray_max_replicas': (0, 'autoscaling maximum (0: a fixed ray_replicas)', (0, 100000)),
    'ray_target_ongoing': (2.0, 'autoscaling target of requests in flight per replica',
                           (0.1, 100000.0)),
    'ray_max_batch_size': (4, 'frames a replica labels in one batch (@serve.batch)',
                           (1, 1024)),
    'ray_batch_wait_s': (0.01, 'longest wait of a replica batch for more frames',
                         (0.0, 60.0)),
    'ray_num_cpus': (1.0, 'CPUs reserved per replica', (0.0, 1024.0)),
    'ray_num_gpus': (0.0, 'GPUs per replica (a fraction shares one GPU)', (0.0, 64.0)),
    'ray_max_in_flight': (8, 'requests the bridge has outstanding at once', (1, 100000)),
    'ray_timeout_s': (60.0, 'longest wait for one answer before the request is retried',
                      (0.1, 3600.0)),
    'ray_retries': (1, 'times a request whose replica died or timed out is sent again',
                    (0, 100)),
    'ray_local_cpus': (0, 'CPUs of the local Ray started when ray_address is empty (0: all)',
                       (0, 100000)),
}


# Ray's switch between a cluster node and one machine alone: off, every Ray process binds and
# connects to the loopback address (else Ray resolves even 127.0.0.1 to the routable one).
SINGLE_MACHINE_ENV = 'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'


def connect(address: str, local_cpus: int = 0, **kwargs) -> bool:
    """
    Join the Ray cluster at ``address``, or start a local Ray when it is empty.

    A local Ray serves this machine alone: it listens and talks on the loopback address only.
    Returns True when this call started Ray (the caller shuts it down). ``kwargs`` go to
    ``ray.init`` (over the defaults: namespace ``laecips``, no dashboard, logs to the driver).
    """
    if not address:  # read by Ray on import, and by the processes it starts
        os.environ[SINGLE_MACHINE_ENV] = '0'
    import ray
    if ray.is_initialized():
        return False
    opts = dict(namespace='laecips', log_to_driver=True, configure_logging=False)
    opts.update(kwargs)
    if address:
        ray.init(address=address, **opts)
        return False
    from ray._private import ray_constants  # already imported: the variable came too late
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(**{'num_cpus': int(local_cpus) or None, 'include_dashboard': False, **opts})
    return True


def deployment_options(p: dict) -> dict:
    """Return Serve deployment options (replicas or autoscaling, resources) from params."""
    opts: dict = {
        'ray_actor_options': {'num_cpus': float(p['ray_num_cpus']),
                              'num_gpus': float(p['ray_num_gpus'])},
        # Twice a batch: the next batch forms while one is labelled.
        'max_ongoing_requests': 2 * int(p['ray_max_batch_size']),
    }
    lo, hi = int(p['ray_replicas']), int(p['ray_max_replicas'])
    if hi > lo:
        opts['autoscaling_config'] = {
            'min_replicas': lo, 'max_replicas': hi,
            'target_ongoing_requests': float(p['ray_target_ongoing'])}
    else:
        opts['num_replicas'] = lo
    return opts


class RayLabeller(Labeller):
    """A labeller whose frames are labelled by the replicas of a Ray Serve deployment."""

    def __init__(self, labeller: str, params: dict, p: dict, torch_threads: int = 0,
                 log: Callable[[str], None] = print):
        from ray import serve
        self._log = log
        self.counters: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(int(p['ray_max_in_flight']))
        self._timeout, self._retries = float(p['ray_timeout_s']), int(p['ray_retries'])
        self._started_ray = connect(p['ray_address'], int(p['ray_local_cpus']))
        app = p['ray_app']
        try:  # another bridge (or the operator) deployed it: share its replicas
            self.handle = serve.get_app_handle(app)
            log(f'ray: using the running Serve application {app!r}')
        except Exception:  # noqa: BLE001 -- Serve not started, or no such application
            # No HTTP proxy: the bridge is the only way in.
            serve.start(proxy_location='Disabled')
            from laecips_cloud.ray_replica import LabellerReplica
            opts = deployment_options(p)
            dep = LabellerReplica.options(**opts).bind(
                labeller, params, torch_threads, int(p['ray_max_batch_size']),
                float(p['ray_batch_wait_s']))
            self.handle = serve.run(dep, name=app, route_prefix=None)
            log(f'ray: deployed {app!r}: {opts}')
        info = self.handle.info.remote().result(timeout_s=self._timeout)
        self.name, self.class_map = info['name'], info['class_map']
        self.device = f'ray:{info["device"]}'

    def _submit(self, image: np.ndarray, edge: np.ndarray | None):
        return self.handle.label.remote((image, edge))

    def label_with_confidence(
            self, images: Sequence[np.ndarray],
            edge_labels: Sequence[np.ndarray | None] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray | None] | None]:
        edges = list(edge_labels) if edge_labels is not None else [None] * len(images)
        out: list = [None] * len(images)
        todo = collections.deque(range(len(images)))
        inflight: collections.deque = collections.deque()
        while todo or inflight:
            # Block for a slot only while holding none (other threads release theirs).
            while todo and self._slots.acquire(blocking=not inflight):
                i = todo.popleft()
                inflight.append((i, self._submit(images[i], edges[i]), 0))
            i, resp, tries = inflight.popleft()
            try:
                out[i] = resp.result(timeout_s=self._timeout)
            except Exception as e:  # noqa: BLE001 -- replica died, timed out, labeller raised
                if tries < self._retries:
                    with self._lock:
                        self.counters['retried'] += 1
                        n = self.counters['retried']
                    self._log(f'ray: frame sent again ({type(e).__name__}) [{n} retried]')
                    inflight.append((i, self._submit(images[i], edges[i]), tries + 1))
                    continue  # the slot goes with the new request
                with self._lock:
                    self.counters['failed'] += 1
                self._log(f'ray: no answer for a frame after {tries + 1} tries: '
                          f'{type(e).__name__}: {str(e)[:200]}')
            self._slots.release()
        return out

    def label(self, images: Sequence[np.ndarray],
              edge_labels: Sequence[np.ndarray | None] | None = None) -> list:
        return [r[0] if r is not None else None
                for r in self.label_with_confidence(images, edge_labels)]

    def close(self) -> None:
        """Shut down the local Ray this labeller started; else only disconnect."""
        import ray
        if self._started_ray:
            from ray import serve
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        elif ray.is_initialized():
            ray.shutdown()


def factory(p: dict, create: Callable[..., Labeller],
            log: Callable[[str], None] = print) -> Callable[..., Labeller]:
    """
    Return what builds the bridge's labeller for its ``backend``: ``(name, **params)``.

    ``local``: ``create`` itself (the registry, in this process); ``ray``: a ``RayLabeller``
    whose replicas call ``create`` with the same parameters.
    """
    if p['backend'] == 'local':
        return create
    if p['backend'] != 'ray':
        raise ValueError(f"parameter backend must be 'local' or 'ray', not {p['backend']!r}")

    def make(name: str, **params) -> Labeller:
        # 'auto' is resolved by each replica on its own machine.
        params['device'] = p['device']
        return RayLabeller(name, params, p, int(p['torch_threads']), log)
    return make
