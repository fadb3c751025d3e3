"""An S3-compatible server (moto) on a fixed 127.0.0.1 port that a test can stop and start again.

moto keeps its buckets in this process, so a stop followed by a start is a store that restarts:
clients see refused connections meanwhile, then the same objects on the same endpoint.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from tests.helpers.ray_nodes import free_port


class RestartableS3:
    """moto's threaded server on one port for its whole life (see the module docstring)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Serve (again) on the same port; returns once the port accepts connections."""
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"moto did not come up on port {self.port}")

    def stop(self) -> None:
        """Stop serving: connections are refused until :meth:`start`."""
        if self._server is not None:
            self._server.stop()
            self._server = None
