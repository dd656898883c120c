"""Real Redis for the tests: private ``redis-server`` processes and a 3-node cluster.

Everything listens on 127.0.0.1 only, every wait is bounded, and every process
started here is stopped by its PID.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, Optional, Union

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")

#: Probes and inspecting clients fail at once rather than retry with back-off.
NO_RETRY = Retry(NoBackoff(), 0)

#: The longest any wait here lasts (server start, cluster forming, a paused request).
WAIT = 20.0


def unique_prefix() -> str:
    """A key prefix no other test (or helper running tests) uses."""
    return f"test:{uuid.uuid4().hex[:12]}:"


def unreachable(url: str) -> Optional[str]:
    """Why Redis at ``url`` cannot be used, or None if it answers PING."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1, retry=NO_RETRY)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as error:
        return f"{type(error).__name__}: {error}"
    return None


def delete_prefix(client: Union[redis.Redis, RedisCluster], prefix: str) -> None:
    """Remove every key under ``prefix`` (on every primary of a cluster)."""
    nodes = (
        [client.get_redis_connection(node) for node in client.get_primaries()]
        if isinstance(client, RedisCluster)
        else [client]
    )
    for node in nodes:
        for key in node.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000):
            node.delete(key)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


class RedisServer:
    """A private ``redis-server`` on a loopback port, without persistence, stopped by PID.

    ``stop()`` then ``start()`` brings it back on the same port (empty, as
    nothing is saved), which is how the outage tests take Redis away.
    """

    def __init__(self, directory: Path, port: int, *extra_args: str) -> None:
        self.directory = directory
        self.port = port
        self.extra_args = extra_args
        self.process: Optional[subprocess.Popen] = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            REDIS_SERVER,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5, retry=NO_RETRY)
        try:
            wait_until(lambda: self._answers(probe), f"redis-server on port {self.port}")
        finally:
            probe.close()

    def _answers(self, probe: redis.Redis) -> bool:
        if self.process.poll() is not None:
            log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server on port {self.port} exited:\n{log}")
        try:
            return probe.ping()
        except (redis.AuthenticationError, redis.ResponseError):
            return True  # it answers, if only to ask for a password
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def client(self) -> redis.Redis:
        """A plain client for inspecting the server (not the one under test)."""
        return redis.Redis(port=self.port, socket_connect_timeout=2, socket_timeout=2, retry=NO_RETRY)


class LocalCluster:
    """Three ``redis-server --cluster-enabled yes`` primaries on loopback, joined by ``redis-cli``."""

    def __init__(self, directory: Path, ports: list[tuple[int, int]]) -> None:
        cluster_options = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        self.nodes = [
            RedisServer(directory / str(port), port, *cluster_options, "--cluster-port", str(bus_port))
            for port, bus_port in ports
        ]
        self.client: Optional[RedisCluster] = None

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=WAIT,
        )
        probes = [node.client() for node in self.nodes]
        try:
            wait_until(
                lambda: all(probe.cluster("info")["cluster_state"] == "ok" for probe in probes),
                "cluster_state:ok on every node",
            )
        finally:
            for probe in probes:
                probe.close()
        self.client = RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", node.port) for node in self.nodes],
            socket_connect_timeout=2,
            socket_timeout=2,
        )

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        for node in self.nodes:
            node.stop()

    def keys_per_node(self, prefix: str) -> dict[int, int]:
        """How many keys under ``prefix`` each node (by port) holds."""
        counts = {}
        for node in self.nodes:
            client = node.client()
            try:
                counts[node.port] = sum(1 for _ in client.scan_iter(match=prefix + "*", count=1000))
            finally:
                client.close()
        return counts
