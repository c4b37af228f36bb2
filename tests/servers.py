"""Real servers for the service, worker and MLflow serving tests (and bench/bench_service.py).

Each server is a subprocess in its own session (process group) writing to a log file; `stop()`
kills that group, so nothing a test started outlives it. `serve_in_thread` runs the service's uvicorn
server on 127.0.0.1 in a thread of the test process instead (real sockets, a model the test already
loaded), and stops it on exit.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra) -> dict:
    """This process's environment (MLFLOW_TRACKING_URI included), the venv's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Server:
    def __init__(self, args: list[str], log: Path, env: dict | None = None, cwd: Path = ROOT):
        self.args, self.log_path = [str(a) for a in args], Path(log)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - open for the server's lifetime
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env or child_env(), cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: int) -> None:
        """Signal the server process itself (not its children)."""
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Kill the server's whole process group (the server and anything it started)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    def wait_until(self, check, timeout: float, what: str, interval: float = 0.1):
        """Poll `check()` until it returns a true value; fail (with the log tail) on timeout or exit."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = check()
            except Exception:  # noqa: BLE001 - not up yet
                value = None
            if value:
                return value
            if not self.alive():
                raise AssertionError(f"{what}: server exited with {self.proc.returncode}\n{self.output()[-4000:]}")
            time.sleep(interval)
        raise AssertionError(f"{what}: not within {timeout:.0f} s\n{self.output()[-4000:]}")


def ended(pid: int) -> bool:
    """The process is gone, or dead and waiting for a parent to reap it (an orphan whose init is slow to)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_ended(pid: int, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not ended(pid):
        if time.time() > deadline:
            raise AssertionError(f"{what}: process {pid} still running after {timeout:.0f} s")
        time.sleep(0.1)


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise AssertionError("redis-server is not installed: `make setup` installs it "
                             "(apt-get install -y redis-server)")
    return found


def start_redis(workdir: Path, persistent: bool = False, port: int | None = None) -> tuple[Server, int]:
    """A throwaway redis-server on 127.0.0.1 (a free port unless given). persistent: configs/redis.conf, as
    `make redis` runs it (append-only file), so a restart on the same workdir and port finds every
    acknowledged write; else no persistence at all."""
    import redis

    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = [ROOT / "configs/redis.conf"] if persistent else ["--save", "", "--appendonly", "no"]
    server = Server([redis_server_binary(), *conf, "--port", port, "--bind", "127.0.0.1", "--dir", workdir,
                     "--protected-mode", "yes"], workdir / "redis.log")
    server.wait_until(lambda: redis.Redis(port=port).ping(), 60, "redis-server start")
    return server, port


def start_service(log: Path, *overrides: str, env: dict | None = None) -> tuple[Server, str]:
    """`python -m inference.service` on a free port; returns the server and its base URL once ready."""
    import httpx

    port = free_port()
    args = [sys.executable, "-m", "inference.service", "--port", port]
    for o in overrides:
        args += ["--set", o]
    server = Server(args, log, env=env)
    url = f"http://127.0.0.1:{port}"
    server.wait_until(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 180, "service ready")
    return server, url


def start_worker(log: Path, *overrides: str, consumer: str | None = None, env: dict | None = None) -> Server:
    args = [sys.executable, "-m", "inference.worker"]
    for o in overrides:
        args += ["--set", o]
    if consumer:
        args += ["--consumer", consumer]
    return Server(args, log, env=env)


@contextmanager
def serve_in_thread(cfg, app):
    """The service `app` under uvicorn with the settings of `cfg` (inference.service.server_settings), on a
    free port of 127.0.0.1, served from a thread; yields its base URL."""
    import uvicorn

    from inference.service import ServerConfig, server_settings

    port = free_port()
    server = uvicorn.Server(ServerConfig(app, **{**server_settings(cfg), "host": "127.0.0.1", "port": port}))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise AssertionError("in-process service did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)
