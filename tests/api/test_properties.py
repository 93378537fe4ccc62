"""Property-based tests of the loader and the analyzer: whatever YAML comes in, loading and
analysis end in a model or in problems of the documented form, never in a traceback.

Inputs are generated from scratch, or made by mutating real meshes (the demo shop, the
analyzer fixtures, the translation inputs): keys dropped or added, values replaced by
other types, random strings, deep nesting, duplicate keys, broken YAML syntax.

Runs are deterministic and small, so the suite stays fast. To search harder, run with
``GOSSAMER_EXPLORE=1``: fifty times the examples, a fresh random seed each run.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.api import Source, load_config
from gossamer.model import Problem, Severity, analyze, errors

ROOT = Path(__file__).resolve().parents[2]
CODES_MD = ROOT / "docs" / "reference" / "codes.md"
DOCUMENTED = frozenset(
    re.findall(r"^### (GSM\d{4})$", CODES_MD.read_text(encoding="utf-8"), flags=re.MULTILINE)
)
SEED_FILES = sorted(
    [
        ROOT / "examples" / "shop" / "mesh.yaml",
        *(ROOT / "tests" / "model" / "testdata" / "analyze").glob("*/*.yaml"),
        *(ROOT / "tests" / "translate" / "testdata" / "in").glob("*.yaml"),
    ]
)
SEED_TEXTS = [p.read_text(encoding="utf-8") for p in SEED_FILES]


def _documents(text: str) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        return []


SEED_DOCS = [d for text in SEED_TEXTS for d in _documents(text)]


EXPLORE = os.environ.get("GOSSAMER_EXPLORE") == "1"


def bounded(examples: int) -> settings:
    """Deterministic, with a bounded number of examples. No deadline per example: speed
    is not what these tests check, and a busy machine must not fail them."""
    return settings(
        max_examples=examples * (50 if EXPLORE else 1),
        deadline=None,
        derandomize=not EXPLORE,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- what must hold ---------------------------------------------------------------------------


def check(sources: list[Source]) -> None:
    """Loading and analysis end in a model or in problems of the documented form."""
    config, problems = load_config(sources)
    assert isinstance(problems, list)
    if config is None:
        assert errors(problems), "no config, yet no error says why"
    else:
        assert not errors(problems), "a config came back together with errors"
        found = analyze(config)
        assert not errors(found), "analyze found an error that validate let through"
        problems = problems + found
    names = {s.name for s in sources}
    for p in problems:
        check_form(p, names)


def check_form(p: Problem, names: set[str]) -> None:
    assert isinstance(p, Problem)
    assert p.code in DOCUMENTED, f"{p.code} is not documented in docs/reference/codes.md"
    assert isinstance(p.severity, Severity)
    assert isinstance(p.message, str) and p.message
    assert p.file in names or (p.file == "" and p.document == 0), p
    assert isinstance(p.document, int) and p.document >= 0
    if p.file:
        assert p.document >= 1, p
    assert p.resource == "" or not p.resource.startswith("/"), p
    text = str(p)
    assert text.startswith(f"{p.severity.value} {p.code}: "), text
    if p.file:
        assert text.startswith(f"{p.severity.value} {p.code}: {p.file}, document {p.document}")
    if p.hint:
        assert text.endswith(f"\n  hint: {p.hint}"), text
    data = p.to_dict()
    assert Problem.from_dict(json.loads(json.dumps(data))) == p


# --- strategies -------------------------------------------------------------------------------


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {k for k in node if isinstance(k, str)}
        for v in node.values():
            found |= _keys(v)
        return found
    if isinstance(node, list):
        return set().union(*(_keys(v) for v in node)) if node else set()
    return set()


FIELD_NAMES = sorted(set().union(*(_keys(d) for d in SEED_DOCS)))
INTERESTING = [
    "",
    "0s",
    "-1s",
    "1h30m",
    "10 s",
    "http",
    "tcp",
    "grpc",
    "/",
    "//",
    "/a?b",
    ".*",
    "(?!x)",
    "*",
    "*.example.com",
    "Workload",
    "HTTPRoute",
    "Gateway",
    "Service",
    "gateway.networking.k8s.io/v1",
    "gossamer.dev/v1alpha1",
    "yes",
    "null",
    "~",
    "x" * 300,
    "UPPER_case",
    "a\nb",
    "\t",
    "é",
    "\u202e",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(INTERESTING),
    st.text(max_size=12),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
    ),
    max_leaves=16,
)


def _nest(value: Any, depth: int, as_list: bool) -> Any:
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


def _paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in a parsed document, the root included."""
    found = [here]
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, (*here, i))
    return found


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    """A real document after a few structural edits."""
    doc = json.loads(json.dumps(draw(st.sampled_from(SEED_DOCS)), default=str))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)))
        op = draw(st.sampled_from(["drop", "replace", "add", "nest", "duplicate", "retype"]))
        if not path:
            if op == "replace":
                doc = draw(values)
            continue
        parent, last = _get(doc, path[:-1]), path[-1]
        if op == "drop":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(values)
        elif op == "add" and isinstance(parent[last], dict):
            parent[last][draw(keys)] = draw(values)
        elif op == "add" and isinstance(parent[last], list):
            parent[last].append(draw(values))
        elif op == "nest":
            depth = draw(st.integers(1, 60))
            parent[last] = _nest(parent[last], depth, draw(st.booleans()))
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(last, json.loads(json.dumps(parent[last])))
        elif op == "retype":
            parent[last] = {
                str: lambda v: [v],
                int: str,
                float: str,
                bool: str,
                list: lambda v: {"x": v},
                dict: lambda v: list(v.values()),
                type(None): lambda _v: 0,
            }.get(type(parent[last]), str)(parent[last])
        if not isinstance(doc, dict | list) or _paths(doc) == [()]:
            break
    return doc


def _leaves(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [x for v in node.values() for x in _leaves(v)]
    if isinstance(node, list):
        return [x for v in node for x in _leaves(v)]
    return [node]


LEAVES: dict[type, list[Any]] = {}
for _leaf in (x for d in SEED_DOCS for x in _leaves(d)):
    if isinstance(_leaf, str | int) and _leaf not in LEAVES.setdefault(type(_leaf), []):
        LEAVES[type(_leaf)].append(_leaf)


@st.composite
def edited_meshes(draw: st.DrawFn) -> list[Any]:
    """A whole real mesh after edits that keep each value's type: a name, port, path or
    duration swapped for another one seen in the seeds, an optional key dropped. Most of
    these load, so they reach the analyzer's cross-resource checks."""
    text = draw(st.sampled_from(SEED_TEXTS))
    docs = json.loads(json.dumps(_documents(text), default=str))
    if not docs:
        return docs
    for _ in range(draw(st.integers(1, 5))):
        path = draw(st.sampled_from(_paths(docs)[1:]))
        parent, last = _get(docs, path[:-1]), path[-1]
        value = parent[last]
        if draw(st.integers(0, 4)) == 0 and isinstance(parent, dict) and len(path) > 2:
            del parent[last]
        elif isinstance(value, str | int) and not isinstance(value, bool):
            parent[last] = draw(st.sampled_from(LEAVES[type(value)]))
    return list(docs)


def _dump(docs: list[Any]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False, allow_unicode=True) for d in docs)


SPECIALS = [
    ":",
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "'",
    '"',
    "#",
    "&a ",
    "*a",
    "!!",
    "!!python/object:os.system ",
    "|",
    ">",
    "%",
    "@",
    "`",
    "\t",
    "\n",
    "\n---\n",
    "\x00",
    "\x07",
    "\ufeff",
    "? ",
    "<<: *a\n",
    "[" * 300,
    "{a: " * 300,
    "- " * 200,
]


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    """A real file after a few edits of its text: syntax broken on purpose."""
    text = draw(st.sampled_from(SEED_TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        lines = text.split("\n")
        op = draw(st.sampled_from(["insert", "delete", "dup-line", "swap", "truncate", "tabs"]))
        at = draw(st.integers(0, len(text)))
        if op == "insert":
            piece = draw(st.one_of(st.sampled_from(SPECIALS), st.text(max_size=6)))
            text = text[:at] + piece + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        elif op == "dup-line" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            text = "\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
        elif op == "swap" and len(lines) > 1:
            i = draw(st.integers(0, len(lines) - 2))
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
            text = "\n".join(lines)
        elif op == "truncate":
            text = text[:at]
        elif op == "tabs":
            text = text.replace("  ", "\t", draw(st.integers(1, 5)))
    return text


# --- properties -------------------------------------------------------------------------------


def test_the_seeds_are_worth_mutating() -> None:
    assert len(SEED_DOCS) >= 100
    kinds = {d.get("kind") for d in SEED_DOCS if isinstance(d, dict)}
    assert {"Workload", "HTTPRoute", "GRPCRoute", "Gateway", "TrafficPolicy", "Mesh"} <= kinds
    for text in SEED_TEXTS:
        check([Source("seed.yaml", text)])


@bounded(150)
@given(st.lists(mutated_documents(), min_size=1, max_size=4), st.sampled_from(SEED_TEXTS))
def test_mutated_documents_next_to_a_real_mesh(docs: list[Any], mesh: str) -> None:
    check([Source("mesh.yaml", mesh), Source("edit.yaml", _dump(docs))])


@bounded(150)
@given(edited_meshes())
def test_edited_meshes(docs: list[Any]) -> None:
    check([Source("mesh.yaml", _dump(docs))])


@bounded(150)
@given(mutated_texts())
def test_mutated_text(text: str) -> None:
    check([Source("mesh.yaml", text)])


@bounded(100)
@given(st.lists(values, min_size=1, max_size=3))
def test_generated_documents(docs: list[Any]) -> None:
    check([Source("mesh.yaml", _dump(docs))])


@bounded(100)
@given(
    st.dictionaries(
        st.sampled_from(["apiVersion", "kind", "metadata", "spec", "status"]),
        st.one_of(values, st.sampled_from(INTERESTING)),
    ),
    st.sampled_from(
        [
            ("gossamer.dev/v1alpha1", k)
            for k in ("Workload", "ExternalService", "Mesh", "TrafficPolicy", "RetryPolicy")
        ]
        + [("gateway.networking.k8s.io/v1", k) for k in ("HTTPRoute", "GRPCRoute", "Gateway")]
    ),
)
def test_generated_documents_of_every_kind(doc: dict[str, Any], kind: tuple[str, str]) -> None:
    doc = {"apiVersion": kind[0], "kind": kind[1], "metadata": {"name": "x"}, **doc}
    check([Source("mesh.yaml", _dump([doc]))])


@bounded(100)
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    check([Source("mesh.yaml", text)])
