"""Joining a Ray cluster, shared by every stage that runs work on one (batch inference, feature tables).

`address`: "" starts a local Ray instance for this process (its workers import the project from this checkout);
"auto" joins the cluster this node belongs to (`ray start --head` / `ray start --address=...`); "HOST:PORT" joins
that cluster. On a cluster the project and its requirements must be installed on every node.
"""

from __future__ import annotations

import os
from pathlib import Path

from competition.errors import InputError


def ray_module():
    try:
        import ray
    except ImportError:
        raise InputError("the ray engine needs ray (pip install -r requirements.txt)") from None
    return ray


def connect(address: str, cpus: int):
    """The ray module, connected (once per process)."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    if address:
        ray.init(address=address, log_to_driver=False)
        return ray
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    return ray
