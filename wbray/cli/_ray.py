"""Starting or joining a Ray cluster for commands that are not runs (``wbray serve``).

The logic lives with the pipelines (``wbray.pipelines._session``), where the public API uses it.
"""

from wbray.pipelines._session import ray_session

__all__ = ["ray_session"]
