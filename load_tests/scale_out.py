"""Scale out on one machine: two service processes behind nginx (``least_conn``), against one.

``python -m load_tests.scale_out --out docs/benchmarks [--untrained default]``

Starts ``ddp serve --port 8001`` and ``--port 8002`` (``DDP_TORCH_THREADS=1`` each: two
processes share the cores instead of fighting over them), writes an nginx config into a
temporary prefix (its logs, pid and temp files there too; nothing under /etc or /var) with
both ports in one ``least_conn`` upstream, checks it with ``nginx -t`` and runs nginx in the
foreground (``daemon off``) as this user, listening on ``--nginx-port``. Then two Locust runs
of ``--seconds`` with ``--users`` closed-loop users and one scenario: through nginx, then
straight to the first backend alone. Each backend's ``/metrics`` is read around the nginx
run: ``ddp_requests_total{endpoint="/densepose", status="2xx"}`` counts what each one served.
Everything started is stopped at the end. Needs the ``nginx`` binary (Debian: ``apt-get
install nginx``). Writes ``scale_out.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import describe, environment, markdown_table, save_figure, write_outputs
from load_tests.metrics import delta, scrape
from load_tests.runner import AGGREGATED, REPO, Row, run_locust
from load_tests.scenarios import SCENARIOS

MODULE = "load_tests.scale_out"
STEM = "scale_out"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_config(prefix: Path, *, listen_port: int, backends: Sequence[str]) -> str:
    """An nginx config for a non-root run from ``prefix``: one ``least_conn`` upstream of
    ``backends`` (``host:port``) behind ``127.0.0.1:listen_port``; the access log names the
    backend of each request."""
    servers = "\n".join(f"        server {backend} max_fails=0;" for backend in backends)
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in TEMP_DIRS)
    return f"""# written by load_tests/scale_out.py
worker_processes 1;
daemon off;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;

events {{
    worker_connections 1024;
}}

http {{
    log_format upstream '$remote_addr "$request" $status $request_time $upstream_addr';
    access_log {prefix / "access.log"} upstream;
{temp}
    client_max_body_size 25m;
    client_body_buffer_size 1m;

    upstream ddp {{
        least_conn;
{servers}
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{listen_port};
        location / {{
            proxy_pass http://ddp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    binary = shutil.which("nginx")
    if binary is None:
        raise FileNotFoundError("nginx is not installed (Debian: apt-get install nginx)")
    return binary


def nginx_command(prefix: Path, config: Path, *, test: bool = False) -> list[str]:
    """``nginx [-t] -p PREFIX -e PREFIX/error.log -c CONFIG``: nothing outside the prefix."""
    error_log = str(prefix / "error.log")
    return [nginx_binary(), *(["-t"] if test else []), "-p", str(prefix), "-e", error_log,
            "-c", str(config)]  # fmt: skip


def write_nginx(prefix: Path, *, listen_port: int, backends: Sequence[str]) -> Path:
    """Write and check (``nginx -t``) the config under ``prefix``; its path."""
    prefix.chmod(0o755)  # a root master runs its worker as nobody, which must reach the prefix
    config = prefix / "nginx.conf"
    config.write_text(nginx_config(prefix, listen_port=listen_port, backends=backends))
    subprocess.run(nginx_command(prefix, config, test=True), check=True, capture_output=True)
    return config


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float, path: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}{path}", timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url}{path} not ready in {timeout_s:g} s")


@contextlib.contextmanager
def started(
    command: Sequence[str], *, env: dict[str, str], log: Path, url: str, ready_path: str,
    stop_signal: signal.Signals = signal.SIGTERM, timeout_s: float = 180.0,
) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """A process we start and, whatever happens, stop (``stop_signal``, then SIGKILL)."""
    with log.open("wb") as handle:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=handle)
    try:
        wait_ready(url, process, timeout_s, ready_path)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(stop_signal)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def backend_command(port: int, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--device", "cpu"]
    if args.weights:
        command += ["--weights", str(args.weights)]
    if args.untrained:
        command += ["--untrained", args.untrained]
    return command


def served(before: dict[str, Any], after: dict[str, Any], url: str) -> float:
    return delta(before[url], after[url], "ddp_requests_total", endpoint="/densepose", status="2xx")


def summary(rows: dict[str, Row]) -> dict[str, Any]:
    everything = rows[AGGREGATED]
    return {
        "requests": everything.requests,
        "failures": everything.failures,
        "throughput_rps": everything.ok_rps,
        "average_ms": everything.average_ms,
        "latency_ms": everything.percentiles_ms,
    }


def render_markdown(report: dict[str, Any]) -> str:
    headers = ["target", "req/s", "p50 ms", "p99 ms", "requests", "failures"]
    rows = [
        [
            name,
            f"{run['throughput_rps']:.2f}",
            f"{run['latency_ms']['50%']:.0f}",
            f"{run['latency_ms']['99%']:.0f}",
            str(run["requests"]),
            str(run["failures"]),
        ]
        for name, run in report["runs"].items()
    ]
    per_backend = ", ".join(f"{url}: {count:.0f}" for url, count in report["per_backend"].items())
    settings = report["settings"]
    return (
        "# Scale-out: two backends behind nginx (least_conn) vs one\n\n"
        f"{describe(report['environment'])}\n\n"
        f"Two `ddp serve` processes, 1 torch thread each (`DDP_TORCH_THREADS=1`), network "
        f"`{report['model_id']}`; nginx {report['nginx_version']} on port "
        f"{settings['nginx_port']}. Locust scenario `{settings['scenario']}`, "
        f"{settings['users']} closed-loop users, {settings['seconds']:g} s per run.\n\n"
        + markdown_table(headers, rows)
        + f"\n* requests each backend served during the nginx run (its `/metrics`): "
        f"{per_backend}\n* throughput through nginx / one backend: "
        f"**{report['speedup']:.2f}x**\n"
    )


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate_axes, share_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = list(report["runs"])
    rate_axes.bar(names, [report["runs"][n]["throughput_rps"] for n in names])
    rate_axes.set(ylabel="requests / s", title="throughput")
    backends = list(report["per_backend"])
    share_axes.bar(backends, [report["per_backend"][b] for b in backends])
    share_axes.set(ylabel="requests served", title="per backend (nginx run)")
    share_axes.tick_params(axis="x", labelsize=7)
    save_figure(figure, path)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {STEM}.*")
    parser.add_argument("--ports", type=int, nargs=2, default=[8001, 8002])
    parser.add_argument("--nginx-port", type=int, default=8080)
    parser.add_argument("--weights", type=Path, help="checkpoint (default: the service's)")
    parser.add_argument("--untrained", metavar="CONFIG", help="when the weights are missing")
    parser.add_argument("--scenario", default="persons-3", choices=SCENARIOS[:-1])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    env = environment(module=MODULE, argv=argv, threads=1)
    backend_env = os.environ | {"DDP_TORCH_THREADS": "1"}
    urls = [f"http://127.0.0.1:{port}" for port in args.ports]
    front = f"http://127.0.0.1:{args.nginx_port}"
    version = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, check=True)
    with contextlib.ExitStack() as stack:
        prefix = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ddp-nginx-")))
        for port, url in zip(args.ports, urls, strict=True):
            stack.enter_context(started(
                backend_command(port, args), env=backend_env, log=prefix / f"backend{port}.log",
                url=url, ready_path="/readyz",
            ))  # fmt: skip
        backends = [f"127.0.0.1:{port}" for port in args.ports]
        config = write_nginx(prefix, listen_port=args.nginx_port, backends=backends)
        stack.enter_context(started(
            nginx_command(prefix, config), env=dict(os.environ), log=prefix / "nginx.out",
            url=front, ready_path="/healthz", stop_signal=signal.SIGQUIT,
        ))  # fmt: skip
        model_id = httpx.get(f"{front}/v1/model", timeout=10).json()["model_id"]
        csv_dir = prefix / "csv"
        before = {url: scrape(url) for url in urls}
        through = run_locust(front, args.scenario, users=args.users, seconds=args.seconds,
                             csv_prefix=csv_dir / "nginx")  # fmt: skip
        after = {url: scrape(url) for url in urls}
        alone = run_locust(urls[0], args.scenario, users=args.users, seconds=args.seconds,
                           csv_prefix=csv_dir / "single")  # fmt: skip
    runs = {"nginx -> 2 backends": summary(through), "1 backend": summary(alone)}
    report = {
        "environment": env,
        "model_id": model_id,
        "nginx_version": version.stderr.strip().rsplit("/", 1)[-1],
        "settings": {
            "ports": args.ports,
            "nginx_port": args.nginx_port,
            "scenario": args.scenario,
            "users": args.users,
            "seconds": args.seconds,
        },
        "runs": runs,
        "per_backend": {url: served(before, after, url) for url in urls},
        "speedup": runs["nginx -> 2 backends"]["throughput_rps"]
        / max(runs["1 backend"]["throughput_rps"], 1e-9),
    }
    write_outputs(args.out, STEM, report, markdown=render_markdown, plot=plot)
    return report


if __name__ == "__main__":
    main()
