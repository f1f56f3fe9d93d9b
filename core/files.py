"""Checked, atomic file writes: the one place the program writes a file's bytes.

Why: ``ndarray.tofile`` and buffered writes can drop a failed write (a full disk) without an
error, and a rename after such a write swapped an empty mask in for a good one. Here every
``os.write`` is checked (short writes are completed), the data is synced with ``fsync`` before the
temporary file is renamed over the target, and on any failure the temporary file is removed and
the target is left as it was.

Also here: strict JSON (no bare ``NaN``, which most JSON readers refuse) and CSV cells that a
spreadsheet cannot run as a formula.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import threading
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` atomically; raises OSError naming the file."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
    except OSError as exc:
        raise OSError(exc.errno, f"{path}: cannot write ({exc.strerror})") from None
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OSError(exc.errno, f"{path}: could not be written ({exc.strerror or exc}); nothing was replaced") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON: NaN and infinities become ``null`` (a bare NaN is not JSON)."""
    return json.dumps(_finite(obj), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return write_atomic(path, to_json(obj, indent) + "\n")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A text cell that would start a spreadsheet formula gets a leading apostrophe (OWASP's
    advice for CSV injection); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_uncell(text: str) -> str:
    """The value :func:`csv_cell` escaped, as it was."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text


def write_csv(path: str | os.PathLike, header: list[str], rows: list[list[Any]]) -> Path:
    import csv

    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow([csv_cell(v) for v in r])
    return write_atomic(path, buf.getvalue())


def save_figure(fig, path: str | os.PathLike) -> Path:
    """A matplotlib figure, rendered in memory and written checked."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png")
    return write_atomic(path, buf.getvalue())


# -- file names built from user data ---------------------------------------------------------------
_UNSAFE_CHARS = set('/\\<>:"|?*') | {chr(c) for c in range(32)} | {"\x7f"}
MAX_NAME_BYTES = 150  # well under the 255 bytes of common file systems, room for suffixes


def name_hash(text: str, n: int = 8) -> str:
    import hashlib

    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def safe_file_name(text: str) -> str:
    """One path component from a label value or key part: separators, control and reserved
    characters become ``_``, ``.``/``..``/empty names get a leading ``_``, trailing dots and spaces
    (which Windows drops) are kept by a ``_``, and long names are cut with a hash of the whole."""
    s = "".join("_" if ch in _UNSAFE_CHARS else ch for ch in str(text))
    if s.strip(".") == "" or s.rstrip(". ") != s:
        s = "_" + s + ("_" if s.rstrip(". ") != s else "")
    if len(s.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        cut = s.encode("utf-8", "surrogatepass")[: MAX_NAME_BYTES - 10].decode("utf-8", "ignore")
        s = f"{cut}~{name_hash(str(text))}"
    return s


def flat_name(key: str) -> str:
    """A key such as ``test/scratch/000`` as one file stem, ``test__scratch__000``."""
    return "__".join(safe_file_name(part) for part in str(key).split("/"))


def unique_names(items: list[tuple[str, str]]) -> dict[str, str]:
    """{full key: name} from (full key, wanted name) pairs: a wanted name shared by several keys
    (compared case-insensitively, as on Windows and macOS) gets ``~<hash of the full key>``, so no
    output silently overwrites another and a key keeps its name from run to run."""
    groups: dict[str, list[str]] = {}
    for key, name in items:
        groups.setdefault(name.casefold(), []).append(key)
    out: dict[str, str] = {}
    for key, name in items:
        out[key] = name if len(groups[name.casefold()]) == 1 else f"{name}~{name_hash(key)}"
    taken: dict[str, str] = {}
    for key, name in out.items():
        n = 8
        while name.casefold() in taken and taken[name.casefold()] != key:
            n += 4
            name = f"{dict(items)[key]}~{name_hash(key, n)}"
        taken[name.casefold()] = key
        out[key] = name
    return out
