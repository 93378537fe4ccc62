"""Response compression through the mesh: what each algorithm costs and saves.

One ``gossamer up`` mesh with a client workload and four copies of the same upstream
app, each backing a service of its own:

- ``catalog-off``: no TrafficPolicy, responses cross the mesh as they are;
- ``catalog-gzip``, ``catalog-br``, ``catalog-zstd``: a TrafficPolicy with
  ``compression: {algorithms: [<one>]}`` (the other compression settings at their
  defaults), so the server sidecar's compressor filter encodes the responses.

The app is nginx serving one static JSON document (a product catalog, generated
deterministically, about 40 KiB). wrk sends a paced load (500 rps by default) to the
client sidecar's outbound HTTP port with ``Host: <service>`` and an ``Accept-Encoding``
header that asks for the variant's algorithm (``identity`` for ``off``). The variants are
measured side by side in interleaved rounds. For each: bytes per response (the body as
decoded from a sample response, and everything wrk read off the socket, headers and
framing included), CPU microseconds per request of the client sidecar, the server
sidecar and the app (utime+stime from /proc around each run), and p50/p99 latency.
Ratios are against ``off``.

Results: ``bench/results/compression.json`` and ``.md``.
Run from the repo root: ``python -m bench.compression`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import (
    LOOPBACK,
    BenchError,
    GossamerUp,
    WrkResult,
    add_int_options,
    busy_machine_notes,
    check_limits,
    cpu_use,
    dig,
    envoy_version_of,
    finish_results,
    fmt,
    latency_summary,
    load_cores,
    machine_at_start,
    median_of_rounds,
    notes_lines,
    other_envoys,
    raise_nofile_limit,
    ratio,
    rotated,
    rounds_for_median,
    run_benchmark,
    run_line,
    run_wrk,
)
from bench._nginx_app import command, config, nginx_binary

NAME = "compression"
PAYLOAD_PATH = "/catalog.json"
PAYLOAD_SEED = 20261127
PAYLOAD_TARGET_BYTES = 40 * 1024


@dataclass(frozen=True)
class Variant:
    name: str
    algorithm: str | None
    """The TrafficPolicy's algorithm (None: no policy)."""
    accept_encoding: str
    """What wrk asks for."""

    @property
    def service(self) -> str:
        return f"catalog-{self.name}"


VARIANTS = (
    Variant("off", None, "identity"),
    Variant("gzip", "gzip", "gzip"),
    Variant("br", "br", "br"),
    Variant("zstd", "zstd", "zstd"),
)
BASELINE = VARIANTS[0].name


@dataclass(frozen=True)
class Settings:
    rate: int = 500
    connections: int = 8
    rounds: int = 5
    seconds: int = 4
    warmup_seconds: int = 1


# --- the payload ---------------------------------------------------------------------------

_ADJECTIVES = (
    "classic", "organic", "smoked", "roasted", "wild", "aged", "fresh", "spiced", "golden",
    "dark", "light", "heritage", "reserve", "single-origin", "hand-picked", "small-batch",
)  # fmt: skip
_NOUNS = (
    "green tea", "black tea", "oolong", "coffee beans", "espresso", "cocoa", "honey",
    "olive oil", "sea salt", "pepper", "vanilla", "cinnamon", "saffron", "rice", "pasta",
    "granola", "jam", "mustard", "vinegar", "chocolate",
)  # fmt: skip
_CATEGORIES = ("tea", "coffee", "pantry", "spices", "sweets", "breakfast", "oils")
_TAGS = (
    "vegan", "gluten-free", "fair-trade", "organic", "bestseller", "new", "limited",
    "gift", "bulk", "local", "imported", "sugar-free",
)  # fmt: skip
_WORDS = (
    "a", "balanced", "blend", "with", "notes", "of", "citrus", "and", "caramel", "sourced",
    "from", "family", "farms", "packed", "in", "recyclable", "tins", "for", "everyday",
    "use", "rich", "smooth", "finish", "perfect", "mornings", "slow", "roasted", "harvested",
    "by", "hand", "the", "season", "best", "served", "warm", "cold",
)  # fmt: skip


def _product(rng: random.Random, index: int) -> dict[str, Any]:
    adjective, noun = rng.choice(_ADJECTIVES), rng.choice(_NOUNS)
    return {
        "id": f"prod-{index:05d}",
        "sku": f"SKU-{rng.randrange(10**7):07d}",
        "name": f"{adjective.title()} {noun.title()}",
        "slug": f"{adjective}-{noun}".replace(" ", "-"),
        "category": rng.choice(_CATEGORIES),
        "price": {"amount": round(rng.uniform(1.5, 89.0), 2), "currency": "EUR"},
        "inStock": rng.random() > 0.15,
        "stock": rng.randrange(0, 500),
        "rating": {"average": round(rng.uniform(2.5, 5.0), 1), "count": rng.randrange(0, 2000)},
        "tags": sorted(rng.sample(_TAGS, rng.randrange(1, 4))),
        "description": " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(8, 20))) + ".",
        "image": f"https://img.example.com/products/{index:05d}.jpg",
        "updatedAt": f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
        f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
    }


def catalog_payload(target_bytes: int = PAYLOAD_TARGET_BYTES) -> bytes:
    """A product catalog as JSON, deterministic, just under ``target_bytes`` long."""
    rng = random.Random(PAYLOAD_SEED)
    products: list[dict[str, Any]] = []
    body = b""
    while True:
        candidate = [*products, _product(rng, len(products) + 1)]
        doc = {"page": 1, "pageSize": len(candidate), "total": 1342, "items": candidate}
        encoded = json.dumps(doc, indent=1).encode() + b"\n"
        if len(encoded) > target_bytes:
            return body
        products, body = candidate, encoded


# --- the mesh ------------------------------------------------------------------------------

_STATIC_SITE = """\
    types {{ application/json json; }}
    default_type application/octet-stream;
    sendfile on;
    gzip off;
    server {{
        listen 127.0.0.1:@PORT@;
        root {site};
    }}
"""


def app_command(workdir: Path, site: Path) -> list[str]:
    """nginx serving ``site`` on $PORT (Gossamer sets it): a shell fills the port into a
    config template, then replaces itself with nginx, so the app's pid is nginx's."""
    if nginx_binary() is None:
        raise BenchError("nginx is not installed (see bench/README.md)")
    workdir.mkdir(parents=True, exist_ok=True)
    template = workdir / "nginx.conf.in"
    http = _STATIC_SITE.format(site=site)
    template.write_text(config(workdir, http, worker_connections=1024))
    conf = workdir / "nginx.conf"
    t, c = shlex.quote(str(template)), shlex.quote(str(conf))
    script = f'sed "s/@PORT@/$PORT/" {t} > {c} && exec {shlex.join(command(workdir, conf))}'
    return ["/bin/sh", "-c", script]


def mesh_yaml(apps_dir: Path, site: Path) -> str:
    docs = [
        "apiVersion: gossamer.dev/v1alpha1\nkind: Workload\nmetadata: {name: client}\n"
        'spec:\n  command: [sleep, "100000"]\n'
    ]
    for v in VARIANTS:
        command = json.dumps(app_command(apps_dir / v.service, site))
        docs.append(
            "apiVersion: gossamer.dev/v1alpha1\nkind: Workload\n"
            f"metadata: {{name: {v.service}}}\n"
            f"spec:\n  ports: [{{port: 80, protocol: http}}]\n  command: {command}\n"
        )
        if v.algorithm is not None:
            docs.append(
                "apiVersion: gossamer.dev/v1alpha1\nkind: TrafficPolicy\n"
                f"metadata: {{name: {v.service}}}\n"
                f"spec:\n  targetRefs: [{{kind: Service, name: {v.service}}}]\n"
                f"  compression: {{algorithms: [{v.algorithm}]}}\n"
            )
    return "---\n".join(docs)


@dataclass
class Target:
    """A variant, running: where wrk sends its load, and whose CPU we read."""

    variant: Variant
    entry_url: str
    client_envoy: int
    server_envoy: int
    app_pid: int
    sample: dict[str, Any] = field(default_factory=dict)

    @property
    def pids(self) -> list[int]:
        return [self.client_envoy, self.server_envoy, self.app_pid]


def fetch(port: int, host: str, accept_encoding: str) -> tuple[int, dict[str, str], bytes]:
    """One GET of the payload through the client sidecar: (status, headers, raw body)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        conn.request(
            "GET", PAYLOAD_PATH, headers={"Host": host, "Accept-Encoding": accept_encoding}
        )
        response = conn.getresponse()
        body = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, body
    except (OSError, http.client.HTTPException):
        return 0, {}, b""
    finally:
        conn.close()


def decode(encoding: str, body: bytes) -> bytes | None:
    """``body`` decoded, or None when this machine has no decoder for ``encoding``."""
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if encoding == "zstd" and (zstd := shutil.which("zstd")):
        proc = subprocess.run(
            [zstd, "-d", "-c", "-q"], input=body, capture_output=True, timeout=10, check=True
        )
        return proc.stdout
    return None  # brotli: no decoder in the venv or on the machine


def check_sample(v: Variant, port: int, payload: bytes) -> dict[str, Any] | None:
    """Fetch one response of ``v``; its figures if it is right, None if not yet."""
    status, headers, body = fetch(port, v.service, v.accept_encoding)
    if status != 200:
        return None
    encoding = headers.get("content-encoding", "")
    if encoding != (v.algorithm or ""):
        raise BenchError(
            f"{v.service} answered Accept-Encoding {v.accept_encoding!r} with "
            f"Content-Encoding {encoding!r}, expected {v.algorithm or 'none'}"
        )
    try:
        decoded = decode(encoding, body)
    except (zlib.error, subprocess.SubprocessError) as exc:
        raise BenchError(f"{v.service}: the {encoding} body does not decode: {exc}") from None
    if decoded is not None and decoded != payload:
        raise BenchError(f"{v.service}: the decoded body differs from the payload")
    return {
        "content_encoding": encoding or None,
        "body_bytes": len(body),
        "decoded_and_compared": decoded is not None,
        "transfer_encoding": headers.get("transfer-encoding"),
        "content_length": headers.get("content-length"),
    }


def start_mesh(workdir: Path, payload: bytes) -> tuple[GossamerUp, list[Target]]:
    site = workdir / "site"
    site.mkdir()
    (site / PAYLOAD_PATH.lstrip("/")).write_bytes(payload)
    mesh = GossamerUp(mesh_yaml(workdir / "apps", site))
    try:
        targets: list[Target] = []

        def ready(status: dict[str, Any]) -> bool:
            client = mesh.instance(status, "client")
            port = client.get("outbound_http_port") if client else None
            if client is None or not isinstance(port, int):
                return False
            found = []
            for v in VARIANTS:
                server = mesh.instance(status, v.service)
                if server is None or server.get("state") != "running":
                    return False
                pids = [client.get("envoy_pid"), server.get("envoy_pid"), server.get("app_pid")]
                ints = [p for p in pids if isinstance(p, int) and p > 0]
                if len(ints) != len(pids):
                    return False
                sample = check_sample(v, port, payload)
                if sample is None:
                    return False
                url = f"http://{LOOPBACK}:{port}{PAYLOAD_PATH}"
                found.append(Target(v, url, ints[0], ints[1], ints[2], sample=sample))
            targets.extend(found)
            return True

        mesh.wait("the compression mesh to serve", ready, timeout_s=60)
        return mesh, targets
    except BaseException:
        mesh.stop()
        raise


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Run:
    wrk: WrkResult
    cpu_s: list[float]
    """client envoy, server envoy, app"""
    other_cpu_s: float


def measure(t: Target, settings: Settings, seconds: int) -> Run:
    with cpu_use(t.pids) as cpu:
        result = run_wrk(
            t.entry_url,
            connections=settings.connections,
            duration_s=seconds,
            rate=settings.rate,
            max_requests=math.ceil(settings.rate * seconds * 1.1),
            host=t.variant.service,
            headers=[f"Accept-Encoding: {t.variant.accept_encoding}"],
        )
    return Run(result, cpu.pids_s, cpu.other_s())


def summarize(runs: Sequence[Run]) -> dict[str, Any]:
    pooled = WrkResult.pooled(r.wrk for r in runs)
    requests, duration = pooled.requests, pooled.duration_s
    cpu = [sum(r.cpu_s[i] for r in runs) for i in range(3)]

    def per_request_us(seconds: float) -> float | None:
        return round(seconds / requests * 1e6, 1) if requests else None

    return {
        "requests": requests,
        "rps": round(requests / duration, 1) if duration else None,
        "errors": {k: v for k, v in pooled.errors.items() if v},
        "wire_bytes_per_response": round(pooled.bytes_read / requests, 1) if requests else None,
        "latency_us": latency_summary(pooled.histogram),
        "cpu_us_per_request": {
            "client_envoy": per_request_us(cpu[0]),
            "server_envoy": per_request_us(cpu[1]),
            "envoys": per_request_us(cpu[0] + cpu[1]),
            "app": per_request_us(cpu[2]),
        },
        "other_load_cores": round(sum(r.other_cpu_s for r in runs) / duration, 2)
        if duration
        else None,
    }


QUIET_CORES = 0.25
"""A run is quiet when other processes kept fewer cores than this busy during it. Medians
over rounds take the quiet rounds only, when there are at least two."""


def _other_cores(run: Run) -> float:
    return load_cores(run.other_cpu_s, run.wrk.duration_s)


def _round_figures(run: Run) -> dict[str, Any]:
    s = summarize([run])
    return {
        "rps": s["rps"],
        "p50_us": s["latency_us"]["p50"],
        "p99_us": s["latency_us"]["p99"],
        "cpu_us_per_request": s["cpu_us_per_request"],
        "other_load_cores": s["other_load_cores"],
    }


RATIO_KEYS: dict[str, tuple[str, ...]] = {
    "wire_bytes": ("wire_bytes_per_response",),
    "p50": ("latency_us", "p50"),
    "p99": ("latency_us", "p99"),
    "cpu_server_envoy": ("cpu_us_per_request", "server_envoy"),
    "cpu_client_envoy": ("cpu_us_per_request", "client_envoy"),
    "cpu_envoys": ("cpu_us_per_request", "envoys"),
}


def ratios(top: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    return {name: ratio(dig(top, *keys), dig(base, *keys)) for name, keys in RATIO_KEYS.items()}


def reference_sizes(payload: bytes) -> dict[str, int]:
    """What stock settings make of the payload, to compare the sidecar's output with."""

    def deflate(level: int, wbits: int, memlevel: int) -> int:
        c = zlib.compressobj(level, zlib.DEFLATED, 16 + wbits, memlevel)
        return len(c.compress(payload) + c.flush())

    out = {
        "gzip_level6_window15 (gzip -6)": deflate(6, 15, 8),
        "gzip_level6_window12_memlevel5": deflate(6, 12, 5),
        "gzip_level9_window15 (gzip -9)": deflate(9, 15, 9),
    }
    if zstd := shutil.which("zstd"):
        for level in (3, 19):
            proc = subprocess.run(
                [zstd, f"-{level}", "-c", "-q"],
                input=payload,
                capture_output=True,
                timeout=30,
                check=True,
            )
            out[f"zstd_level{level} (zstd -{level})"] = len(proc.stdout)
    return out


def run(settings: Settings) -> dict[str, Any]:
    raise_nofile_limit()
    started = time.monotonic()
    payload = catalog_payload()
    data: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine_at_start(),
        "settings": {
            "rate_rps": settings.rate,
            "connections": settings.connections,
            "rounds": settings.rounds,
            "seconds_per_run": settings.seconds,
            "warmup_seconds": settings.warmup_seconds,
            "load_generator": "wrk -t1 with bench/_wrk.lua (paced: absolute schedule)",
            "policy": "TrafficPolicy compression: {algorithms: [<one>]}, other fields default "
            "(minContentLength 1024, Envoy's default content types and compressor settings)",
        },
        "payload": {
            "description": "a product catalog page as JSON (indent 1), deterministic (seeded)",
            "bytes": len(payload),
            "path": PAYLOAD_PATH,
            "reference_compressed_bytes": reference_sizes(payload),
        },
        "variants": {},
        "notes": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-compression-"))
    runs: dict[str, list[Run]] = {v.name: [] for v in VARIANTS}
    mesh: GossamerUp | None = None
    try:
        mesh, targets = start_mesh(workdir, payload)
        data["mesh_ready_s"] = round(time.monotonic() - started, 1)
        data["machine"]["envoy_version"] = envoy_version_of(targets[0].server_envoy)
        ours = {p for t in targets for p in t.pids[:2]}
        for t in targets:
            if settings.warmup_seconds:
                measure(t, settings, settings.warmup_seconds)
        for round_index in range(settings.rounds):
            for t in rotated(targets, round_index):
                runs[t.variant.name].append(measure(t, settings, settings.seconds))
        data["machine"]["other_envoys_at_end"] = other_envoys(ours)
    finally:
        try:
            if mesh is not None:
                mesh.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    base_runs = runs[BASELINE]
    base = summarize(base_runs)
    for t in targets:
        name = t.variant.name
        s = summarize(runs[name])
        sample = t.sample
        entry: dict[str, Any] = {
            "service": t.variant.service,
            "accept_encoding": t.variant.accept_encoding,
            **sample,
            "body_ratio": round(sample["body_bytes"] / len(payload), 4),
            **s,
        }
        used = rounds_for_median([[_other_cores(r)] for r in runs[name]], QUIET_CORES)
        entry["latency_us_median_of_rounds"] = {
            key: statistics.median(
                summarize([runs[name][i]])["latency_us"][key] or math.nan for i in used
            )
            for key in ("p50", "p99")
        }
        entry["rounds_in_latency_median"] = [i + 1 for i in used]
        if name != BASELINE:
            per_round = [
                ratios(summarize([r]), summarize([b]))
                for r, b in zip(runs[name], base_runs, strict=True)
            ]
            used = rounds_for_median(
                [
                    [_other_cores(r), _other_cores(b)]
                    for r, b in zip(runs[name], base_runs, strict=True)
                ],
                QUIET_CORES,
            )
            entry["vs_off"] = {
                "median_of_rounds": median_of_rounds(per_round, used, RATIO_KEYS),
                "rounds_in_median": [i + 1 for i in used],
                "pooled": ratios(s, base),
                "per_round": per_round,
            }
        entry["rounds"] = [_round_figures(r) for r in runs[name]]
        data["variants"][name] = entry
    data["notes"].extend(_warnings(data, settings))
    finish_results(data, started)
    return data


def _warnings(data: dict[str, Any], settings: Settings) -> list[str]:
    out = busy_machine_notes(data["machine"])
    for name, v in data["variants"].items():
        if v["errors"]:
            out.append(f"{name}: errors {v['errors']}")
        if (v["rps"] or 0) < 0.95 * settings.rate:
            out.append(f"{name}: reached {v['rps']} rps, short of {settings.rate}")
        if (v["other_load_cores"] or 0) >= 0.25:
            out.append(
                f"{name}: other processes kept {v['other_load_cores']:.2f} cores busy "
                "during its runs: its figures are noisy"
            )
        if not v["decoded_and_compared"]:
            out.append(
                f"{name}: no {v['content_encoding']} decoder here, so the sample body was not "
                "decoded and compared with the payload (its Content-Encoding was checked)"
            )
    return out


# --- report --------------------------------------------------------------------------------


def markdown(data: dict[str, Any]) -> str:
    s, p = data["settings"], data["payload"]
    lines = [
        "# Compression through the mesh",
        "",
        run_line(data),
        "",
        f"wrk -> client sidecar -> server sidecar (compressor) -> nginx, serving one JSON "
        f"document of {p['bytes']:,} bytes (a product catalog). Paced {s['rate_rps']} rps, "
        f"{s['connections']} connections, {s['rounds']} interleaved rounds of "
        f"{s['seconds_per_run']} s per variant. Each variant is a service of its own with a "
        "TrafficPolicy `compression: {algorithms: [<one>]}` (defaults otherwise); `off` has "
        "no policy. wrk asks with `Accept-Encoding: <algorithm>` (`identity` for off).",
        "",
        "| variant | body bytes | body ratio | wire bytes/resp | p50 ms | p99 ms "
        "| p99 ms pooled | server Envoy us/req | client Envoy us/req | nginx us/req | rps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in data["variants"].items():
        cpu, lat = v["cpu_us_per_request"], v["latency_us_median_of_rounds"]
        lines.append(
            f"| {name} | {v['body_bytes']:,} | {v['body_ratio']:.3f} "
            f"| {fmt(v['wire_bytes_per_response'])} | {fmt(lat['p50'] / 1000, 2)} "
            f"| {fmt(lat['p99'] / 1000, 2)} | {fmt(v['latency_us']['p99'] / 1000, 2)} "
            f"| {fmt(cpu['server_envoy'])} | {fmt(cpu['client_envoy'])} | {fmt(cpu['app'])} "
            f"| {fmt(v['rps'])} |"
        )
    lines += [
        "",
        "p50 and p99: the median of the rounds' figures, quiet rounds only (other processes "
        f"below {QUIET_CORES} cores) when at least two were; p99 pooled: over all requests of "
        "all rounds, noise included. CPU and bytes: pooled over all rounds.",
        "",
        "Ratios to `off` (median of per-round ratios, rounds where both were quiet; pooled "
        "over all rounds in brackets):",
        "",
        "| variant | wire bytes | p50 | p99 | server Envoy CPU | client Envoy CPU "
        "| both Envoys CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in data["variants"].items():
        if "vs_off" not in v:
            continue
        med, pooled = v["vs_off"]["median_of_rounds"], v["vs_off"]["pooled"]
        cells = [f"{fmt(med[k], 2)} ({fmt(pooled[k], 2)})" for k in RATIO_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Body bytes: the response body of a sample request, as sent (compressed); body ratio "
        "= body bytes / payload bytes. Wire bytes: all that wrk read per response, headers "
        "and chunked framing included. CPU: utime+stime from /proc/<pid>/stat around each "
        "run, divided by the requests of the run.",
        "",
        "The same payload with stock tools, for comparison:",
        "",
    ]
    for name, size in p["reference_compressed_bytes"].items():
        lines.append(f"- {name}: {size:,} bytes ({size / p['bytes']:.3f})")
    lines.append("")
    other = [
        f"{name} {v['other_load_cores']:.2f}"
        for name, v in data["variants"].items()
        if v["other_load_cores"] is not None
    ]
    lines.append(f"Cores kept busy by other processes during the runs: {', '.join(other)}.")
    lines += notes_lines(data["notes"])
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> Settings:
    ap = argparse.ArgumentParser(
        prog="python -m bench.compression",
        description="Response compression (off, gzip, br, zstd) through Gossamer's sidecars.",
    )
    limits = {
        "rate": (1, 5_000),
        "connections": (1, 64),
        "rounds": (1, 10),
        "seconds": (1, 30),
        "warmup_seconds": (0, 10),
    }
    helps = {"rate": "paced rate, requests/s", "seconds": "per run"}
    add_int_options(ap, Settings(), limits, helps)
    ns = ap.parse_args(list(argv))
    check_limits(ap, ns, limits)
    return Settings(
        rate=ns.rate,
        connections=ns.connections,
        rounds=ns.rounds,
        seconds=ns.seconds,
        warmup_seconds=ns.warmup_seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(NAME, argv, parse_args, run, markdown)


if __name__ == "__main__":
    sys.exit(main())
