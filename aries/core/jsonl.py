"""Crash-safe files: strict JSONL reading, resumable appends, atomic writes.

The run directory is the contract between stages, so a file a later stage trusts must never be
half-written: whole files are written to a temporary name and renamed; append-only JSONL files
are written one complete line at a time and a torn last line (a kill mid-write) is discarded on
the next open instead of being trusted; folders are written under a temporary name and moved
into place whole (`replace_folder`). Running out of disk space while writing any of them is one
line (`writing`) naming the path, what was being written and the space left; the same command
resumes once there is room.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from aries import AriesError

OUT_OF_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
OUT_OF_SPACE_MESSAGES = (
    "No space left on device",  # the OS's text, also inside safetensors' SafetensorError
    "Disk quota exceeded",
    "unexpected pos",  # torch.save's zip writer after a short write (a full disk)
    "file write failed",  # torch.save's zip writer, other versions
)
ALMOST_FULL = 2**20
"""Less free space than this after a write failed: the failure is taken for a full disk."""


def free_space(path: str | Path) -> int:
    """Bytes free to this user on the filesystem that holds `path` (or would hold it)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def human_bytes(count: float) -> str:
    """`1.2 MB`: decimal units, as `df -H` shows them."""
    if count < 1000:
        return f"{count:.0f} B"
    power = min(3, int(math.log(count, 1000)))
    return f"{count / 1000**power:.1f} {' KMG'[power]}B"


def out_of_space(error: BaseException, path: str | Path | None = None) -> bool:
    """Whether `error` (or an error it came from) is a full disk or quota. Libraries that write
    outside Python say so in words (safetensors) or not at all (torch.save): with `path`, any
    failure that left the filesystem all but full counts."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in OUT_OF_SPACE_ERRNOS:
            return True
        if any(message in str(seen) for message in OUT_OF_SPACE_MESSAGES):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return path is not None and free_space(path) < ALMOST_FULL
    except OSError:
        return False


def disk_full_message(error: BaseException, path: str | Path, what: str) -> str:
    """One line: the file (the one the OS named, else `path`), what was written, what is free."""
    named = getattr(error, "filename", None) or path
    try:
        free = f"{human_bytes(free_space(named))} free there"
    except OSError:
        free = "free space unknown"
    return (
        f"{named}: out of disk space while writing {what} ({free}); make room and run the "
        "same command again"
    )


@contextlib.contextmanager
def writing(path: str | Path, what: str, *, partial: str | Path | None = None) -> Iterator[None]:
    """Turn a full disk while the block writes `what` to `path` into one `AriesError` line.

    `partial`: a temporary folder the block was filling; removed, so that nothing half-written
    stays behind (and its space is free again). Other errors pass unchanged.
    """
    try:
        yield
    except AriesError:
        raise
    except Exception as error:
        full = out_of_space(error, path)
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        if not full:
            raise
        raise AriesError(disk_full_message(error, path, what)) from None


def iter_jsonl(path: str | Path, *, allow_torn_tail: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSONL file; a malformed line is an error naming file and line.

    With `allow_torn_tail`, a last line without its newline that does not parse is treated as an
    interrupted write and skipped (that is how `JsonlAppender` files end after a kill).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise AriesError(f"{path}: cannot read file ({error.strerror})") from None
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        is_tail = number == len(lines)  # no newline after it
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            if is_tail and allow_torn_tail:
                return
            raise AriesError(f"{path}:{number}: malformed JSON ({error})") from None
        if not isinstance(record, dict):
            raise AriesError(
                f"{path}:{number}: expected a JSON object, got {type(record).__name__}"
            )
        yield record


def read_jsonl(path: str | Path, *, allow_torn_tail: bool = False) -> list[dict[str, Any]]:
    """All records of a JSONL file (see `iter_jsonl`)."""
    return list(iter_jsonl(path, allow_torn_tail=allow_torn_tail))


class JsonlAppender:
    """Append records to a JSONL file that may already hold records from an interrupted run.

    On open, complete records are kept (their ids are in `done_ids`) and a torn last line is
    truncated away. Each `write` appends complete lines and fsyncs, so a kill loses at most the
    records being written, never one already reported as written.
    """

    def __init__(self, path: str | Path, id_field: str = "id"):
        self.path = Path(path)
        self.id_field = id_field
        self.done_ids: set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            records = read_jsonl(self.path, allow_torn_tail=True)
            self.done_ids = {str(record[id_field]) for record in records}
            self._truncate_torn_tail()
        self._file = open(self.path, "ab", buffering=0)  # nothing left in a buffer to retry

    def _truncate_torn_tail(self) -> None:
        """Drop a torn last line; a complete last record that only lacks its newline (already
        counted in `done_ids`) is kept and terminated instead."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            try:
                complete = isinstance(json.loads(data[keep:]), dict)
            except (json.JSONDecodeError, UnicodeDecodeError):
                complete = False
            with open(self.path, "r+b") as file:
                if complete:
                    file.seek(0, os.SEEK_END)
                    file.write(b"\n")
                else:
                    file.truncate(keep)

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records (skipping ids already present) and make them durable."""
        lines = []
        for record in records:
            record_id = str(record[self.id_field])
            if record_id in self.done_ids:
                continue
            self.done_ids.add(record_id)
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        if not lines:
            return
        end = os.fstat(self._file.fileno()).st_size
        with writing(self.path, f"{len(lines)} JSONL records"):
            try:
                data = memoryview("".join(lines).encode("utf-8"))
                while data:  # a raw file may write less than asked
                    data = data[self._file.write(data) :]
                os.fsync(self._file.fileno())
            except BaseException:
                os.ftruncate(self._file.fileno(), end)  # no torn line left behind
                raise

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def current_umask() -> int:
    """The process umask (read by setting it and putting it back: Python has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes, what: str = "a file") -> None:
    """Write a whole file so that readers see the old content or the new one, never a mix.

    The file gets the mode any new file of the user gets (0666 less the umask), like `open`.
    """
    path = Path(path)
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide it from others
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_folder(path.parent)  # the rename itself survives a power loss


def fsync_folder(folder: str | Path) -> None:
    """Flush a folder's entries (names created, renamed or deleted in it) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """Flush every file under `folder`, and the folders themselves, to disk: what a writer that
    does not fsync (safetensors, torch.save, the trainer) left in the page cache is on disk
    before a completion marker or a rename vouches for it."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_folder(root)


def atomic_write_text(path: str | Path, text: str, what: str = "a text file") -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), what)


def atomic_write_json(path: str | Path, data: Any, what: str = "a JSON file") -> None:
    """`atomic_write_text` for one JSON document."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n", what)


def atomic_write_jsonl(
    path: str | Path, records: Iterable[dict[str, Any]], what: str = "JSONL records"
) -> None:
    """`atomic_write_text` for a whole JSONL file."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_text(path, text, what)


def replace_folder(tmp: str | Path, folder: str | Path) -> None:
    """Move the finished folder `tmp` to `folder`, replacing what is there.

    Folders cannot be swapped in one step, so the old one is first renamed to `<folder>.old`:
    a kill at any moment leaves `folder` whole (old or new) or absent, never half-deleted or
    half-written, and the next call clears what a killed one left. The files are flushed to
    disk before the rename and the rename after it, so a power loss cannot either.
    """
    tmp, folder = Path(tmp), Path(folder)
    fsync_tree(tmp)
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    fsync_folder(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
