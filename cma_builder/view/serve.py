"""``cma-build view --serve``: Rerun's web viewer for a recording, on a remote machine, reached over SSH.

It runs the ``rerun`` executable of the installed rerun-sdk (``--serve-web``). That server binds every
interface unless told otherwise, so it gets ``--bind`` (localhost by default). Rerun's viewer sends
anonymous usage data unless turned off; this one is started with it off on both ends: the server reads
a private config that says so (XDG_CONFIG_HOME / XDG_DATA_HOME of a temporary folder: the user's own
``rerun analytics`` setting is left as it is) and the printed URL opens the viewer with
``notebook=true``, the mode in which the browser viewer starts no usage data (README, "Viewing in 3D").
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from cma_builder.errors import CmaError

LOCALHOST = "127.0.0.1"


def rerun_executable() -> Path:
    """The ``rerun`` binary shipped in the installed rerun-sdk wheel."""
    import rerun_cli

    path = Path(rerun_cli.__file__).parent / ("rerun.exe" if sys.platform.startswith("win") else "rerun")
    if not path.is_file():
        raise CmaError(f"{path}: the rerun executable of rerun-sdk is missing; "
                       "reinstall: pip install 'cma-toolkit[view]'")
    return path


def analytics_off_env(folder: Path) -> dict[str, str]:
    """Environment for a rerun process whose usage data is off: its config (``rerun/analytics.json``)
    and data folders inside ``folder``, the config saying ``analytics_enabled: false``."""
    config, data = folder / "config", folder / "data"
    (config / "rerun").mkdir(parents=True, exist_ok=True)
    (data / "rerun" / "analytics").mkdir(parents=True, exist_ok=True)
    settings = {"analytics_enabled": False, "analytics_id": "cma-build-view", "metadata": {},
                "config_file_path": str(config / "rerun" / "analytics.json"),
                "data_dir_path": str(data / "rerun" / "analytics")}
    (config / "rerun" / "analytics.json").write_text(json.dumps(settings))
    return dict(os.environ, XDG_CONFIG_HOME=str(config), XDG_DATA_HOME=str(data))


def check_serve_options(host: str, web_port: int, grpc_port: int) -> str:
    """The address rerun will bind (``localhost`` read as 127.0.0.1), or a one-line error now, before any
    work: rerun 0.23.1 binds IPv4 addresses only, and each port must be free and different."""
    import ipaddress

    address = LOCALHOST if host == "localhost" else host
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise CmaError(f"--host '{host}': expected an IPv4 address such as 127.0.0.1 (this machine only) or "
                       "0.0.0.0 (every interface)") from None
    if ip.version != 4:
        raise CmaError(f"--host '{host}': rerun 0.23.1 binds IPv4 addresses only, such as 127.0.0.1 or 0.0.0.0")
    if web_port == grpc_port:
        raise CmaError(f"--web-port and --grpc-port are both {web_port}; they need two ports")
    for port, option in ((web_port, "--web-port"), (grpc_port, "--grpc-port")):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError as exc:
                raise CmaError(f"{option} {port}: cannot listen on {address}:{port} ({exc.strerror}); "
                               f"pick another with {option}") from None
    return address


def node_name() -> str:
    """This machine's name as others reach it (the fully qualified one when it is known)."""
    name = socket.getfqdn()
    return socket.gethostname() if not name or name.startswith("localhost") else name


def viewer_url(web_port: int, grpc_port: int, host: str = "localhost") -> str:
    data = quote(f"rerun+http://{host}:{grpc_port}/proxy", safe="")
    return f"http://{host}:{web_port}/?url={data}&notebook=true"


def instructions(host: str, web_port: int, grpc_port: int) -> list[str]:
    """What to run on one's own machine to open the viewer."""
    if host == LOCALHOST:
        return [f"On your machine: ssh -N -L {web_port}:localhost:{web_port} -L {grpc_port}:localhost:{grpc_port} "
                f"{getpass.getuser()}@{node_name()}",
                f"then open {viewer_url(web_port, grpc_port)}",
                "(on this machine itself, open that address directly)"]
    shown = node_name() if host == "0.0.0.0" else host
    return [f"Listening on {host}: anyone who can reach this machine on ports {web_port} and {grpc_port} sees the data",
            f"open {viewer_url(web_port, grpc_port, shown)}"]


def serve(rrd: Path, host: str, web_port: int, grpc_port: int, echo=print) -> int:
    """Serve ``rrd`` until Ctrl-C (or the server stops); returns rerun's exit status (0 after Ctrl-C)."""
    binary = rerun_executable()
    with tempfile.TemporaryDirectory(prefix="cma-rerun-") as folder:
        cmd = [*_dies_with_us(), str(binary), "--serve-web", "--bind", host, "--port", str(grpc_port),
               "--web-viewer-port", str(web_port), str(rrd)]
        log = Path(folder) / "rerun.log"
        with open(log, "w") as fh:  # a file, not a pipe: a long session's log never blocks the server
            proc = subprocess.Popen(cmd, env=analytics_off_env(Path(folder)), stdin=subprocess.DEVNULL, stdout=fh,
                                    stderr=subprocess.STDOUT)
        previous = interrupt_on_termination()
        try:
            if not _wait_listening(proc, host, web_port):
                err = log.read_text(errors="replace").strip().splitlines()
                raise CmaError(f"rerun --serve-web did not start ({err[-1] if err else 'no output'})")
            echo(f"Serving {rrd} with Rerun's web viewer on {host} (web port {web_port}, data port {grpc_port}); "
                 "Ctrl-C stops it.")
            for line in instructions(host, web_port, grpc_port):
                echo(line)
            echo("Rerun's usage data is off for this server and this viewer URL (README, 'Viewing in 3D').")
            return _wait(proc)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# Linux: a fresh single-threaded Python sets PR_SET_PDEATHSIG (kept across exec) and becomes rerun, so the
# server goes when this process goes, even killed with SIGKILL (preexec_fn is unsafe: rerun's threads run here).
_PDEATHSIG = ("import ctypes, os, signal, sys; ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM); "
              "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execv(sys.argv[2], sys.argv[2:])")


def _dies_with_us() -> list[str]:
    return [sys.executable, "-c", _PDEATHSIG, str(os.getpid())] if sys.platform.startswith("linux") else []


def interrupt_on_termination():
    """SIGTERM and SIGHUP raise KeyboardInterrupt (cleanup runs as for Ctrl-C), unless ignored (``nohup``);
    returns the previous handlers."""
    return {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)
            if signal.getsignal(sig) is not signal.SIG_IGN}


def _interrupt(signum, frame):
    """SIGTERM or SIGHUP (a closed SSH session): stop the server as Ctrl-C does, never leave it behind."""
    raise KeyboardInterrupt


def _wait_listening(proc: subprocess.Popen, host: str, port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    connect_host = LOCALHOST if host == "0.0.0.0" else host
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection((connect_host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _wait(proc: subprocess.Popen) -> int:
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 0
