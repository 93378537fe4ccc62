"""The file source: which files count, and that a burst of edits is one change."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gossamer.sources import ConfigPathError, config_files, read_sources, watch


def test_directory_yields_yaml_files_sorted_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("")
    (tmp_path / "a.yml").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "d.yaml").write_text("")
    names = [p.relative_to(tmp_path).as_posix() for p in config_files(tmp_path)]
    assert names == ["a.yml", "b.yaml", "sub/c.yaml"]


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigPathError, match="no such file"):
        config_files(tmp_path / "nope")


def test_sources_carry_their_directory(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text("kind: X\n")
    [source] = read_sources(tmp_path / "mesh.yaml")
    assert source.text == "kind: X\n"
    assert source.base_dir == str(tmp_path.resolve())


async def test_a_burst_of_writes_is_reported_once(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text("v: 0\n")
    changes = 0

    async def count() -> None:
        nonlocal changes
        async for _ in watch(tmp_path, interval_s=0.02, debounce_s=0.15):
            changes += 1

    task = asyncio.create_task(count())
    await asyncio.sleep(0.1)
    for i in range(10):  # an editor saving in several writes, 20 ms apart
        config.write_text(f"v: {i + 1}\n" + "x" * i)
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.6)
    assert changes == 1
    (tmp_path / "other.yaml").write_text("v: 1\n")
    await asyncio.sleep(0.6)
    assert changes == 2
    task.cancel()
