"""Crash-safe JSONL and atomic writes (aries/core/jsonl.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from aries import AriesError
from aries.core.jsonl import (
    JsonlAppender,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    iter_jsonl,
    read_jsonl,
    replace_folder,
)


def _write_lines(path: Path, records: list[dict], tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")


def test_read_jsonl_skips_blank_lines_and_keeps_unicode(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "1", "t": "é✓"}\n\n   \n{"id": "2"}\n', encoding="utf-8")
    assert read_jsonl(path) == [{"id": "1", "t": "é✓"}, {"id": "2"}]


def test_torn_last_line_is_an_error_unless_allowed(tmp_path):
    path = tmp_path / "a.jsonl"
    _write_lines(path, [{"id": "1"}, {"id": "2"}], tail='{"id": "3", "te')
    with pytest.raises(AriesError, match=r"a\.jsonl:3: malformed JSON"):
        read_jsonl(path)
    assert read_jsonl(path, allow_torn_tail=True) == [{"id": "1"}, {"id": "2"}]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "1"}\n{"id": "2"}', encoding="utf-8")
    assert [r["id"] for r in read_jsonl(path, allow_torn_tail=True)] == ["1", "2"]


def test_malformed_middle_line_names_file_and_line_even_when_tail_allowed(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "1"}\n{"id": \n{"id": "3"}\n', encoding="utf-8")
    with pytest.raises(AriesError) as error:
        read_jsonl(path, allow_torn_tail=True)
    assert f"{path}:2:" in str(error.value)


def test_non_object_line_is_an_error(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"id": "1"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(AriesError, match=r"list\.jsonl:2: expected a JSON object, got list"):
        list(iter_jsonl(path))


def test_missing_file_is_an_aries_error(tmp_path):
    with pytest.raises(AriesError, match="cannot read file"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_appender_truncates_torn_tail_and_appends_after_it(tmp_path):
    path = tmp_path / "out" / "chains.jsonl"
    path.parent.mkdir()
    _write_lines(path, [{"id": "a"}, {"id": "b"}], tail='{"id": "c", "text": "half')
    with JsonlAppender(path) as appender:
        assert appender.done_ids == {"a", "b"}
        # the torn line is gone from disk as soon as the file is opened
        assert path.read_bytes().endswith(b'{"id": "b"}\n')
        appender.write([{"id": "c", "text": "whole"}, {"id": "a", "text": "duplicate"}])
    assert read_jsonl(path) == [{"id": "a"}, {"id": "b"}, {"id": "c", "text": "whole"}]


def test_appender_resume_skips_ids_already_written(tmp_path):
    path = tmp_path / "chains.jsonl"
    with JsonlAppender(path) as appender:
        appender.write([{"id": 1, "v": 1}, {"id": 2, "v": 2}])
    with JsonlAppender(path) as appender:
        assert appender.done_ids == {"1", "2"}
        appender.write([{"id": 2, "v": 20}, {"id": 3, "v": 3}, {"id": 3, "v": 30}])
    assert [(r["id"], r["v"]) for r in read_jsonl(path)] == [(1, 1), (2, 2), (3, 3)]
    assert path.read_text().count("\n") == 3


def test_appender_custom_id_field(tmp_path):
    path = tmp_path / "x.jsonl"
    with JsonlAppender(path, id_field="key") as appender:
        appender.write([{"key": "k1"}, {"key": "k1"}])
    assert read_jsonl(path) == [{"key": "k1"}]


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "config.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2, "ü": "ß"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 2, "ü": "ß"}
    atomic_write_jsonl(tmp_path / "sub" / "r.jsonl", [{"id": 1}, {"id": 2}])
    assert read_jsonl(tmp_path / "sub" / "r.jsonl") == [{"id": 1}, {"id": 2}]
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["config.json", "r.jsonl"]


def test_atomic_write_failure_keeps_old_content(tmp_path):
    path = tmp_path / "data.json"
    atomic_write_text(path, "old\n")

    class Boom(Exception):
        pass

    def records():
        yield {"id": 1}
        raise Boom

    with pytest.raises(Boom):
        atomic_write_jsonl(path, records())
    with pytest.raises(TypeError):  # not JSON-serialisable: fails before anything is renamed
        atomic_write_json(path, {"x": object()})
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_atomic_write_failure_during_write_removes_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "data.txt"
    atomic_write_text(path, "old")

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")  # not a full disk (e2e/test_disk_full.py): as is

    monkeypatch.setattr("aries.core.jsonl.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        atomic_write_text(path, "new content")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]


def test_appender_keeps_complete_last_record_missing_only_its_newline(tmp_path):
    path = tmp_path / "chains.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}', encoding="utf-8")
    with JsonlAppender(path) as appender:
        assert appender.done_ids == {"a", "b"}
        appender.write([{"id": "c"}])
    assert read_jsonl(path) == [{"id": "a"}, {"id": "b"}, {"id": "c"}]


def test_appender_drops_torn_multibyte_tail(tmp_path):
    path = tmp_path / "chains.jsonl"
    path.write_bytes('{"id": "a"}\n{"id": "b", "t": "é'.encode()[:-1])
    with JsonlAppender(path) as appender:
        assert appender.done_ids == {"a"}
    assert path.read_bytes() == b'{"id": "a"}\n'


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    """Atomic files get the mode `open` would give them, not mkstemp's private 0600."""
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        (tmp_path / "b.json").write_text("{}")  # what any other file of the user gets
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == 0o666 & ~umask
    assert mode == stat.S_IMODE((tmp_path / "b.json").stat().st_mode)


def test_replace_folder_flushes_every_file_before_the_rename_and_the_rename_after(
    tmp_path, monkeypatch
):
    """A power loss after `replace_folder` returns cannot leave a model folder whose name is on
    disk but whose files are not (what a completion marker or rename vouches for)."""
    tmp = tmp_path / "model.tmp"
    (tmp / "adapter").mkdir(parents=True)
    files = [tmp / "model.safetensors", tmp / "config.json", tmp / "adapter" / "weights.bin"]
    for file in files:
        file.write_bytes(b"x")
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))
    )
    replace_folder(tmp, tmp_path / "model")
    rename = events.index(("replace", str(tmp_path / "model")))
    synced = {path for kind, path in events[:rename] if kind == "fsync"}
    assert {str(f) for f in files} | {str(tmp), str(tmp / "adapter")} <= synced
    assert ("fsync", str(tmp_path)) in events[rename:]
    assert (tmp_path / "model" / "adapter" / "weights.bin").read_bytes() == b"x"
