"""YAML text to the mesh model, with errors people can act on.

Pure: callers hand in text and the name to report; reading files is ``gossamer.sources``'s
job. Every problem names the file, the document (and its first line), the resource, the
field path, what was expected, and a hint.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from gossamer.api._extensions import (
    ExtensionRefs,
    ExternalServiceDoc,
    FaultInjectionDoc,
    MeshDoc,
    RetryPolicyDoc,
)
from gossamer.api._gateway import GatewayDoc
from gossamer.api._grpcroute import GRPCRouteDoc
from gossamer.api._httproute import HTTPRouteDoc
from gossamer.api._policy import TrafficPolicyDoc
from gossamer.api._workload import WorkloadDoc
from gossamer.model import (
    MeshConfig,
    MeshSettings,
    Origin,
    Problem,
    errors,
    forced,
    validate,
)

Doc = (
    WorkloadDoc
    | HTTPRouteDoc
    | GRPCRouteDoc
    | GatewayDoc
    | ExternalServiceDoc
    | MeshDoc
    | FaultInjectionDoc
    | RetryPolicyDoc
    | TrafficPolicyDoc
)
_GATEWAY_API = "gateway.networking.k8s.io/v1"
_GOSSAMER = "gossamer.dev/v1alpha1"
_KINDS: dict[str, tuple[str, type[Doc]]] = {
    "Workload": (_GOSSAMER, WorkloadDoc),
    "HTTPRoute": (_GATEWAY_API, HTTPRouteDoc),
    "GRPCRoute": (_GATEWAY_API, GRPCRouteDoc),
    "Gateway": (_GATEWAY_API, GatewayDoc),
    "ExternalService": (_GOSSAMER, ExternalServiceDoc),
    "Mesh": (_GOSSAMER, MeshDoc),
    "FaultInjection": (_GOSSAMER, FaultInjectionDoc),
    "RetryPolicy": (_GOSSAMER, RetryPolicyDoc),
    "TrafficPolicy": (_GOSSAMER, TrafficPolicyDoc),
}


@dataclass(frozen=True, slots=True)
class Source:
    """One file's text, the name to report it by, and the directory relative paths use."""

    name: str
    text: str
    base_dir: str = ""


@dataclass(frozen=True, slots=True)
class _Parsed:
    doc: Doc
    origin: Origin
    base_dir: str


@dataclass(slots=True)
class Loaded:
    """Documents that passed their schema, and every problem met on the way."""

    docs: list[_Parsed] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def of(self, kind: type[Doc]) -> list[_Parsed]:
        return [p for p in self.docs if isinstance(p.doc, kind)]


def load_config(
    sources: list[Source], settings: MeshSettings | None = None, *, force: bool = False
) -> tuple[MeshConfig | None, list[Problem]]:
    """Parse, check each document, resolve references between them, then check the mesh
    as a whole.

    Returns the config and all problems; the config is ``None`` when any problem is an
    error, so a caller can never apply half of a broken change. With ``force``, the
    errors in ``FORCEABLE`` (a config Envoy can run as written) become warnings.
    """
    loaded = Loaded()
    for source in sources:
        _load_source(source, loaded)
    if errors(loaded.problems):
        return None, loaded.problems
    config = _build(loaded, settings)
    if errors(loaded.problems) or config is None:
        return None, loaded.problems
    problems = loaded.problems + validate(config)
    if force:
        problems = forced(problems)
    if errors(problems):
        return None, problems
    return config, problems


def _build(loaded: Loaded, settings: MeshSettings | None) -> MeshConfig | None:
    """Second pass: documents to model objects, with ExtensionRefs resolved by name."""
    problems = loaded.problems
    refs = ExtensionRefs()
    meshes: list[tuple[MeshDoc, Origin]] = []
    workloads, routes, gateways, externals, policies = [], [], [], [], []
    seen: dict[tuple[str, str], Origin] = {}
    for p in loaded.docs:
        if isinstance(p.doc, FaultInjectionDoc | RetryPolicyDoc):
            key = (p.origin.kind, p.origin.name)
            if key in seen:
                problems.append(
                    Problem.at(
                        p.origin,
                        "GSM0020",
                        f"a {key[0]} named `{key[1]}` is already declared in {seen[key]}",
                        field="metadata.name",
                        hint="names are unique per kind; rename one of them",
                    )
                )
            seen.setdefault(key, p.origin)
        if isinstance(p.doc, FaultInjectionDoc):
            refs.faults[p.origin.name] = p.doc.to_fault()
        elif isinstance(p.doc, RetryPolicyDoc):
            refs.retries[p.origin.name] = p.doc.to_retry()
        elif isinstance(p.doc, MeshDoc):
            meshes.append((p.doc, p.origin))
    for p in loaded.docs:
        doc = p.doc
        if isinstance(doc, WorkloadDoc):
            workloads.append(doc.to_model(p.origin, p.base_dir))
        elif isinstance(doc, GatewayDoc):
            gateways.append(doc.to_model(p.origin, p.base_dir))
        elif isinstance(doc, ExternalServiceDoc):
            externals.append(doc.to_model(p.origin, p.base_dir))
        elif isinstance(doc, TrafficPolicyDoc):
            policies.append(doc.to_model(p.origin, p.base_dir))
        elif isinstance(doc, HTTPRouteDoc | GRPCRouteDoc):
            route, route_problems = doc.to_model(p.origin, p.base_dir, refs)
            problems += route_problems
            if route is not None:
                routes.append(route)
    for _doc, origin in meshes[1:]:
        problems.append(
            Problem.at(
                origin,
                "GSM0023",
                f"a second Mesh resource; the first is {meshes[0][1]}",
                field="kind",
                hint="a mesh has one set of mesh-wide settings: merge them into one Mesh",
            )
        )
    if meshes:
        settings = meshes[0][0].to_settings(meshes[0][1])
    if errors(problems):
        return None
    return MeshConfig(
        workloads=tuple(sorted(workloads, key=lambda w: w.name)),
        routes=tuple(sorted(routes, key=lambda r: (r.name, r.origin.kind if r.origin else ""))),
        settings=settings or MeshSettings(),
        gateways=tuple(sorted(gateways, key=lambda g: g.name)),
        external_services=tuple(sorted(externals, key=lambda e: e.name)),
        policies=tuple(sorted(policies, key=lambda p: p.name)),
    )


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys: the second `replicas:` must not win silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # a list or mapping used as a key (`? [a]`)
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found a list or mapping used as a key",
                    key_node.start_mark,
                ) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key `{key}`",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_source(source: Source, out: Loaded) -> None:
    try:
        loader = _StrictLoader(source.text)
    except yaml.YAMLError as exc:  # a control character: nothing of the file is read
        out.problems.append(_yaml_problem(source.name, 1, exc))
        return
    doc_index = 0
    try:
        while True:
            try:
                if not loader.check_node():
                    break
                node = loader.get_node()
            except (yaml.YAMLError, RecursionError) as exc:
                out.problems.append(_yaml_problem(source.name, doc_index + 1, exc))
                return
            doc_index += 1
            if node is None:
                continue
            try:
                data = loader.construct_document(node)
            except (yaml.YAMLError, RecursionError) as exc:
                out.problems.append(_yaml_problem(source.name, doc_index, exc))
                continue
            if data is None:
                continue
            _load_document(source, doc_index, node.start_mark.line + 1, data, out)
    finally:
        loader.dispose()


def _yaml_problem(name: str, document: int, exc: yaml.YAMLError | RecursionError) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    if isinstance(exc, RecursionError):
        what = "nested too deeply"
    elif isinstance(exc, yaml.reader.ReaderError):
        what = f"character #x{exc.character:04x} at offset {exc.position} is not allowed"
    else:
        what = getattr(exc, "problem", None) or str(exc)
    return Problem(
        "GSM0001",
        f"malformed YAML{where}: {what}",
        file=name,
        document=document,
        hint="check indentation and quoting around that line; tabs are not allowed in YAML",
    )


def _load_document(source: Source, index: int, line: int, data: Any, out: Loaded) -> None:
    name = source.name
    where = f"{name}:{line}" if name else f"line {line}"
    if not isinstance(data, dict):
        out.problems.append(
            Problem(
                "GSM0002",
                f"expected a mapping with apiVersion, kind, metadata and spec, got "
                f"{type(data).__name__}",
                file=name,
                document=index,
                hint=f"the document starts at {where}",
            )
        )
        return
    kind = data.get("kind")
    meta = data.get("metadata")
    res_name = meta.get("name") if isinstance(meta, dict) else None
    resource = f"{kind}/{res_name}" if isinstance(kind, str) and res_name else str(kind or "")
    if not isinstance(kind, str) or kind not in _KINDS:
        close = difflib.get_close_matches(str(kind), list(_KINDS), n=1)
        out.problems.append(
            Problem(
                "GSM0003",
                f"unknown kind `{kind}`" if kind else "the document has no `kind`",
                file=name,
                document=index,
                field="kind",
                hint=f"did you mean `{close[0]}`?"
                if close
                else "supported kinds: " + ", ".join(sorted(_KINDS)),
            )
        )
        return
    api_version, schema = _KINDS[kind]
    if data.get("apiVersion") != api_version:
        out.problems.append(
            Problem(
                "GSM0004",
                f"{kind} expects apiVersion `{api_version}`, got `{data.get('apiVersion')}`",
                file=name,
                document=index,
                resource=resource,
                field="apiVersion",
                hint=f"set apiVersion: {api_version}",
            )
        )
        return
    try:
        doc = schema.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            out.problems.append(_schema_problem(schema, err, name, index, resource))
        return
    out.docs.append(_Parsed(doc, Origin(name, index, kind, doc.metadata.name), source.base_dir))


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _schema_problem(
    schema: type[BaseModel], err: Any, name: str, index: int, resource: str
) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    path = _field_path(loc)
    hint = ""
    if kind == "extra_forbidden":
        allowed = _allowed_fields(schema, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        if close:
            hint = f"did you mean `{close[0]}`?"
        elif allowed:
            hint = "allowed fields here: " + ", ".join(allowed)
        message = f"unknown field `{loc[-1]}`"
    elif kind == "missing":
        message = "this field is required"
        hint = "see docs/reference/config.md for the fields of each kind"
    elif kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        message = f"`{err.get('input')}` is not allowed; expected {expected}"
    elif kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
        message = f"`{err.get('input')}` is not a valid name"
        hint = "use lower-case letters, digits and '-', starting with a letter (RFC 1035)"
    else:
        message = str(err["msg"])
        if kind == "value_error":
            message = message.removeprefix("Value error, ")
        elif "input" in err and not isinstance(err["input"], dict | list):
            message += f" (got `{err['input']}`)"
    return Problem(
        "GSM0005",
        message,
        file=name,
        document=index,
        resource=resource,
        field=path,
        hint=hint,
    )


def _allowed_fields(schema: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names valid at ``loc`` inside ``schema``, for 'did you mean' hints."""
    current: Any = schema
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        current = _model_in(fields[part].annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, Union, types.UnionType, dict):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
