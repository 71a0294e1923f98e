"""Joining a Ray cluster, shared by every stage that runs work on one (batch inference, feature tables).

`address`: "" starts a local Ray instance for this process (its workers import the project from this checkout);
"auto" joins the cluster this node belongs to (`ray start --head` / `ray start --address=...`); "HOST:PORT" (or
"ray://HOST:PORT", Ray's client) joins that cluster. On a cluster the project and its requirements must be installed
on every node.

An address is parsed when the config is read (`check_address`), and a remote one is tried with a bounded timeout
before Ray is asked to join it: an unreachable cluster is one line, not a hang. A local instance is tied to this
process: a watchdog kills its processes when this process dies, even by SIGKILL (Ray's own clean-up runs only on a
normal exit).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from competition.errors import InputError

CONNECT_TIMEOUT_SECONDS = 10.0
_HOST_PORT = re.compile(r"^(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$")


def check_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a HOST:PORT address; None for "" (a local instance) and "auto"; ValueError for anything else."""
    if address in ("", "auto"):
        return None
    match = _HOST_PORT.match(address)
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise ValueError(f"ray_address {address!r} must be '' (a local instance), 'auto' or HOST:PORT")
    return match.group(1).strip("[]"), int(match.group(2))


def ray_module():
    try:
        import ray
    except ImportError:
        raise InputError("the ray engine needs ray (pip install -r requirements.txt)") from None
    return ray


def reachable(address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """InputError unless a HOST:PORT address accepts a connection within `timeout` seconds."""
    try:
        host_port = check_address(address)
    except ValueError as err:
        raise InputError(str(err)) from None
    if host_port is None:
        return
    try:
        socket.create_connection(host_port, timeout=timeout).close()
    except OSError as err:
        why = "no answer" if isinstance(err, TimeoutError) else err.strerror or type(err).__name__
        raise InputError(f"cannot reach the Ray cluster at {address} ({why} within {timeout:g} s)") from None


def connect(address: str, cpus: int):
    """The ray module, connected (once per process)."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    if address:
        reachable(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise InputError(f"cannot join the Ray cluster at {address!r} ({' '.join(str(err).split())[:200]})") from None
        return ray
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    reap_with_this_process()
    return ray


def reap_with_this_process() -> None:
    """Starts a watchdog that kills this process's Ray processes (and their children) once this process is gone."""
    import psutil

    me = psutil.Process()
    heads = [(p.pid, p.create_time()) for p in me.children(recursive=True)]
    args = [str(me.pid), repr(me.create_time()), *(f"{pid}:{created!r}" for pid, created in heads)]
    subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


# Runs in its own process: waits for the driver to end, then kills what is left of the processes it started (and their
# children). Processes are named by (pid, start time), so a recycled pid is never killed.
WATCHDOG = """
import signal, sys, time
import psutil

driver, started = int(sys.argv[1]), float(sys.argv[2])
heads = [tuple(map(float, a.split(":"))) for a in sys.argv[3:]]


def same(pid, created):
    try:
        process = psutil.Process(int(pid))
        return process if process.create_time() == created else None
    except psutil.Error:
        return None


while same(driver, started) is not None:
    time.sleep(0.2)
doomed = []
for pid, created in heads:
    head = same(pid, created)
    if head is not None:
        try:
            doomed += [head, *head.children(recursive=True)]
        except psutil.Error:
            doomed.append(head)
for process in doomed:
    try:
        process.send_signal(signal.SIGKILL)
    except psutil.Error:
        pass
"""
