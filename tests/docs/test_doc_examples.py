"""The YAML examples in the docs stay valid.

Every ```yaml block of the docs below that is a complete resource (it has `apiVersion:`)
is loaded together with the demo shop (examples/shop/mesh.yaml), the way the docs tell
readers to try it: saved next to mesh.yaml while `make demo` runs. It must load without
errors, add no warnings of its own, and name only files that exist.

A block preceded by the line `<!-- not-runnable -->` is skipped (a deliberately broken
example, say). A block that declares a `Mesh` stands for an edit of the shop's own Mesh
(a mesh has only one), so it replaces that document instead of joining it.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from gossamer.api import Source, load_config
from gossamer.model import MeshConfig, Problem, Severity
from gossamer.sources import read_sources

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
DOCS = (ROOT / "docs" / "routing.md", ROOT / "docs" / "reference" / "config.md")
OPT_OUT = "<!-- not-runnable -->"

_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_DOC_SEPARATOR = re.compile(r"(?m)^---[ \t]*$")
_MESH_KIND = re.compile(r"(?m)^kind:[ \t]*Mesh[ \t]*$")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    """The line of the opening fence, 1-based."""
    text: str
    opted_out: bool

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def complete(self) -> bool:
        return "apiVersion:" in self.text


def yaml_blocks(path: Path) -> list[Block]:
    """Every ```yaml fenced block of a Markdown file, dedented as written in lists."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    previous = ""
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"),
            None,
        )
        assert end is not None, f"{path}:{i + 1}: a code fence is never closed"
        if fence.group(2) == "yaml":
            body = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
            blocks.append(Block(path, i + 1, body, opted_out=previous == OPT_OUT))
        previous = "```"
        i = end + 1
    return blocks


BLOCKS = [b for doc in DOCS for b in yaml_blocks(doc)]
RUNNABLE = [b for b in BLOCKS if b.complete and not b.opted_out]


def _shop(without_mesh: bool) -> list[Source]:
    sources = read_sources(SHOP / "mesh.yaml")
    if not without_mesh:
        return sources
    return [
        Source(
            s.name,
            "\n---\n".join(d for d in _DOC_SEPARATOR.split(s.text) if not _MESH_KIND.search(d)),
            s.base_dir,
        )
        for s in sources
    ]


def _load(block: Block | None) -> tuple[MeshConfig | None, list[Problem]]:
    sources = _shop(without_mesh=block is not None and bool(_MESH_KIND.search(block.text)))
    if block is not None:
        # Relative paths (certificates) resolve as in a file saved next to mesh.yaml.
        sources.append(Source(block.name, block.text, str(SHOP.resolve())))
    return load_config(sources)


def _key(p: Problem) -> tuple[str, str, str]:
    return (p.code, p.resource, p.field)


def test_the_docs_have_examples_to_check() -> None:
    routing = [b for b in RUNNABLE if b.doc.name == "routing.md"]
    assert len(routing) >= 15, "docs/routing.md should have a runnable example per feature"
    opted_out = [b.name for b in BLOCKS if b.opted_out]
    assert len(opted_out) <= 3, f"opt out sparingly: {opted_out}"


def test_the_shop_alone_is_valid() -> None:
    config, problems = _load(None)
    assert config is not None, "\n".join(map(str, problems))


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.name)
def test_example_loads_with_the_shop(block: Block) -> None:
    config, problems = _load(block)
    assert config is not None, f"{block.name} does not load with the shop:\n" + "\n".join(
        map(str, problems)
    )
    _, shop_problems = _load(None)
    known = {_key(p) for p in shop_problems}
    new_warnings = [
        p
        for p in problems
        if p.severity is Severity.WARNING and (p.file == block.name or _key(p) not in known)
    ]
    assert not new_warnings, f"{block.name} adds warnings:\n" + "\n".join(map(str, new_warnings))
    missing = [
        path
        for path in (
            *(
                f
                for g in config.gateways
                for lst in g.listeners
                for f in (lst.certificate_file, lst.private_key_file)
            ),
            *(p.tls.ca_file for e in config.external_services for p in e.ports if p.tls),
        )
        if path and not Path(path).is_file()
    ]
    assert not missing, f"{block.name} names files that do not exist: {missing}"
