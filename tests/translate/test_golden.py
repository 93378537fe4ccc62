"""Golden translation tests: testdata/in/*.yaml -> testdata/out/<case>.<proxy>.<type>.yaml.

Regenerate with `make goldens` (pytest --update-goldens) and review the diff. Every golden
proxy config is also checked by the real Envoy (`envoy --mode validate`).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from gossamer.api import Source, load_config
from gossamer.model import MeshState, place, place_gateways, sequential_ports
from gossamer.sidecar import envoy_path
from gossamer.translate import (
    SHORT_NAMES,
    Snapshot,
    static_bootstrap,
    translate,
    translate_gateway,
)

DATA = Path(__file__).parent / "testdata"
CASES = sorted(p.stem for p in (DATA / "in").glob("*.yaml"))


def _translate_case(case: str) -> dict[str, Snapshot]:
    """Every proxy's snapshot (sidecars and gateways). File paths in the config resolve
    against ``testdata/in``, relative, so goldens do not depend on the checkout's path."""
    path = DATA / "in" / f"{case}.yaml"
    source = Source(f"in/{case}.yaml", path.read_text(), "testdata/in")
    config, problems = load_config([source])
    assert config is not None, "\n".join(map(str, problems))
    allocate = sequential_ports(20000)
    state = MeshState(
        config,
        place(config, None, allocate),
        gateway_admin_ports=place_gateways(config, None, allocate),
    )
    snapshots = {i.name: translate(state, i.name) for i in state.instances}
    for gateway in config.gateways:
        snapshots[gateway.node_id] = translate_gateway(state, gateway.name)
    return snapshots


def _render(snapshot: Snapshot, type_url: str) -> str:
    bodies = [json.loads(json.dumps(r.body)) for r in snapshot.of(type_url).values()]
    return yaml.safe_dump(bodies, sort_keys=False, width=100)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, request: pytest.FixtureRequest) -> None:
    update = request.config.getoption("--update-goldens")
    out = DATA / "out"
    mismatches = []
    for proxy, snapshot in _translate_case(case).items():
        for type_url, short in SHORT_NAMES.items():
            golden = out / f"{case}.{proxy}.{short}.yaml"
            text = _render(snapshot, type_url)
            if update:
                golden.parent.mkdir(parents=True, exist_ok=True)
                golden.write_text(text)
            elif not golden.exists() or golden.read_text() != text:
                mismatches.append(golden.name)
    assert not mismatches, f"translation differs from goldens (run `make goldens`): {mismatches}"


def _validate(config: dict[str, object]) -> tuple[int, str]:
    """Run the real Envoy's validation in a directory laid out like a proxy's working
    directory: ``access/`` for access logs, ``testdata`` for the config's relative paths."""
    with tempfile.TemporaryDirectory() as workdir:
        (Path(workdir) / "access").mkdir()
        (Path(workdir) / "testdata").symlink_to(DATA)
        config_file = Path(workdir) / "envoy.json"
        config_file.write_text(json.dumps(config))
        proc = subprocess.run(
            [envoy_path(), "--mode", "validate", "-c", str(config_file), "--disable-hot-restart"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=workdir,
        )
    return proc.returncode, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("case", CASES)
def test_golden_configs_pass_envoy_validate(case: str) -> None:
    snapshots = _translate_case(case)
    configs = [static_bootstrap(s, proxy) for proxy, s in snapshots.items()]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_validate, configs))
    failures = [(p, out) for p, (code, out) in zip(snapshots, results, strict=True) if code != 0]
    assert not failures, failures


def test_goldens_have_no_orphans() -> None:
    expected = {
        f"{case}.{proxy}.{short}.yaml"
        for case in CASES
        for proxy in _translate_case(case)
        for short in SHORT_NAMES.values()
    }
    actual = {p.name for p in (DATA / "out").glob("*.yaml")}
    assert actual == expected
