"""The port of a dashboard this process starts (a local cluster's, a SLURM cluster's
scheduler): the one asked for, or a free one where that one is taken."""

from __future__ import annotations

import contextlib
import socket
import warnings
from collections.abc import Iterator


def free_dashboard_address(address: str) -> str:
    """``address`` (``":8787"``, ``"host:8787"``) where its port is free here, else the same
    host with port 0 (any free port) so that Dask does not warn that the port is in use."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return address
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
        except OSError:
            return f"{host}:0"
    return address


@contextlib.contextmanager
def _quiet_dashboard_port() -> Iterator[None]:
    """No "Port 8787 is already in use" warning from a scheduler started inside, where the
    port was taken between the check and the start: the link printed says which port it got.
    (Around the start only: the filters are the process's.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
        yield
