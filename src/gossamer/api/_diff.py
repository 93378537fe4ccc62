"""What a config change does to the user's resources: added, removed and changed, by kind
and name (wherever in the files they live), each change with a unified diff of the
resource in a canonical YAML form (sorted keys, so reordering alone is no change)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import yaml

from gossamer.api._load import Source


def _resources(sources: Sequence[Source]) -> dict[str, tuple[str, str]]:
    """``Kind/name`` -> (file, canonical YAML). Documents that are not resources are keyed
    by file and position, so they still show up in a diff."""
    out: dict[str, tuple[str, str]] = {}
    for source in sources:
        try:
            docs = list(yaml.safe_load_all(source.text))
        except yaml.YAMLError:
            out[f"file/{source.name}"] = (source.name, source.text)
            continue
        for i, doc in enumerate(d for d in docs if d is not None):
            key = f"{source.name}#{i + 1}"
            if isinstance(doc, dict):
                kind, meta = doc.get("kind"), doc.get("metadata")
                name = meta.get("name") if isinstance(meta, dict) else None
                if isinstance(kind, str) and isinstance(name, str):
                    key = f"{kind}/{name}"
            out[key] = (source.name, yaml.safe_dump(doc, sort_keys=True))
    return out


def config_diff(old: Sequence[Source], new: Sequence[Source]) -> dict[str, Any]:
    """``{"added": [...], "removed": [...], "changed": [...]}``; each item has
    ``resource`` and ``file``, changed ones also ``diff``."""
    before, after = _resources(old), _resources(new)
    added = [{"resource": k, "file": after[k][0]} for k in sorted(after.keys() - before.keys())]
    removed = [{"resource": k, "file": before[k][0]} for k in sorted(before.keys() - after.keys())]
    changed = []
    for key in sorted(before.keys() & after.keys()):
        (old_file, old_text), (new_file, new_text) = before[key], after[key]
        if old_text == new_text:
            continue
        lines = difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=f"{key} ({old_file})",
            tofile=f"{key} ({new_file})",
        )
        changed.append({"resource": key, "file": new_file, "diff": "".join(lines)})
    return {"added": added, "removed": removed, "changed": changed}
