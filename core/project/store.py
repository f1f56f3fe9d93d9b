"""The labeling project: one SQLite file, the only place where SQL lives.

Why SQLite through SQLAlchemy: a single file the inspector can copy, transactions that make each
edit atomic (a crash or kill loses at most the stroke in progress), and WAL mode so the studio
can read while it writes. Every public write method commits before it returns.

Schema (version :data:`SCHEMA_VERSION`; see :data:`MIGRATIONS`):

* ``schema_migrations``: one row per applied migration (version, description, time);
* ``project_meta``: key/value facts (name, creation time, source of the images);
* ``images``: the user's images by path (relative to the project file's folder where possible,
  the absolute path kept as a fallback); files are never copied or modified;
* ``reference_masks``: ground-truth masks brought in by an import (study mode, metrics), kept
  apart from the inspector's labels; stored as a path to the user's file, or as a PNG blob;
* ``pixel_tiles``: the brush mask, cut into 256x256 tiles stored as PNG blobs (empty tiles are
  not stored), so a stroke rewrites only the tiles it touched even on a 4096x4096 image;
* ``blocks``: toggled cells of the 8x8 and 16x16 grids, one row per cell (never as pixels);
* ``boxes``: rotated boxes as centre, width, height, angle (degrees, clockwise on screen, the
  :mod:`semirest.core.labels.boxes` convention);
* ``time_spans``: active labeling time: image, label type, annotator, seconds, start, end;
* ``runs`` (version 2): training runs started from the studio: setting, preset, state, config
  JSON, label snapshot JSON, checkpoint path, metrics JSON, start, end, duration;
* ``run_scores`` (version 2): the image-level score (map maximum) of every image a run scored;
* ``label_classes`` (version 3): the defect classes (name, colour, order); ``blocks.class_id`` and
  ``boxes.class_id`` give each cell and box its class, and a brush tile's pixel values are class
  ids (0: unlabelled), see :mod:`semirest.core.labels.classes`.

A new version appends to :data:`MIGRATIONS`; earlier migrations are never edited.
"""
from __future__ import annotations

import math
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np
from sqlalchemy import (
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool

from semirest.core.data.images import read_image, read_mask
from semirest.core.labels.boxes import RotatedBox
from semirest.core.labels.classes import (
    DEFAULT_CLASS_ID,
    DEFAULT_CLASS_NAME,
    MAX_CLASSES,
    PALETTE,
    ClassNameError,
    LabelClass,
    check_class_name,
    check_colour,
)
from semirest.core.labels.image_labels import LABEL_TYPES, ImageLabels

TILE = 256


class ProjectError(Exception):
    """A user-facing project problem; the message says what happened and what to do."""


class NotAProjectError(ProjectError):
    pass


class NewerSchemaError(ProjectError):
    pass


class ProjectWriteError(ProjectError):
    """An edit could not be committed. The caller keeps the edit and may retry."""


class ProjectLockedError(ProjectWriteError):
    pass


class ProjectReadOnlyError(ProjectWriteError):
    pass


class ProjectDiskFullError(ProjectWriteError):
    pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------- schema
metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("description", Text, nullable=False),
    Column("applied_at", String, nullable=False),
)
project_meta = Table(
    "project_meta", metadata, Column("key", String, primary_key=True), Column("value", Text)
)
images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String, nullable=False, unique=True),  # stable name used by exports
    Column("path", Text, nullable=False),  # relative to the project folder where possible
    Column("abs_path", Text, nullable=False),  # fallback if the project file moved alone
    Column("split", String),
    Column("defect_type", String),
    Column("width", Integer),
    Column("height", Integer),
    Column("position", Integer, nullable=False),
    Column("added_at", String, nullable=False),
)
reference_masks = Table(
    "reference_masks",
    metadata,
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("path", Text),
    Column("abs_path", Text),
    Column("png", LargeBinary),
    CheckConstraint("path IS NOT NULL OR png IS NOT NULL", name="reference_has_data"),
)
pixel_tiles = Table(
    "pixel_tiles",
    metadata,
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("tile_row", Integer, primary_key=True),
    Column("tile_col", Integer, primary_key=True),
    Column("png", LargeBinary, nullable=False),
    Column("pixel_count", Integer, nullable=False),
)
blocks = Table(
    "blocks",
    metadata,
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("grid", Integer, primary_key=True),
    Column("row", Integer, primary_key=True),
    Column("col", Integer, primary_key=True),
    Column("class_id", Integer, nullable=False, server_default=str(DEFAULT_CLASS_ID)),  # version 3
    CheckConstraint("grid IN (8, 16)", name="grid_is_8_or_16"),
)
boxes = Table(
    "boxes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("cx", Float, nullable=False),
    Column("cy", Float, nullable=False),
    Column("width", Float, nullable=False),
    Column("height", Float, nullable=False),
    Column("angle", Float, nullable=False),  # degrees, clockwise on screen, in [-90, 90)
    Column("updated_at", String, nullable=False),
    Column("class_id", Integer, nullable=False, server_default=str(DEFAULT_CLASS_ID)),  # version 3
)
time_spans = Table(
    "time_spans",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("label_type", String, nullable=False),
    Column("annotator", String, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("started_at", String, nullable=False),
    Column("ended_at", String, nullable=False),
    CheckConstraint(
        "label_type IN (" + ", ".join(f"'{t}'" for t in LABEL_TYPES) + ")", name="known_label_type"
    ),
)


runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("setting", String, nullable=False),  # un | sup | semi
    Column("preset", String, nullable=False),
    Column("state", String, nullable=False),  # running | finished | cancelled | failed
    Column("config", Text, nullable=False),  # JSON of the full Config
    Column("label_snapshot", Text, nullable=False),  # JSON: which images, which labels were used
    Column("checkpoint", Text),  # path of the checkpoint, relative to the project folder where possible
    Column("metrics", Text),  # JSON: pixel_auroc, pro, ap, ... and the loss curve
    Column("message", Text),  # why a run failed or was cancelled
    Column("started_at", String, nullable=False),
    Column("finished_at", String),
    Column("duration_s", Float),
    CheckConstraint("state IN ('running', 'finished', 'cancelled', 'failed')", name="known_run_state"),
)
run_scores = Table(
    "run_scores",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("score", Float, nullable=False),
)

label_classes = Table(
    "label_classes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False, unique=True),
    Column("colour", String, nullable=False),  # "#rrggbb"
    Column("position", Integer, nullable=False),
)

RUN_STATES = ("running", "finished", "cancelled", "failed")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable  # (sqlalchemy Connection) -> None


def _create_v1(conn) -> None:
    metadata.create_all(conn, tables=[project_meta, images, reference_masks, pixel_tiles, blocks, boxes, time_spans])


def _create_v2(conn) -> None:
    metadata.create_all(conn, tables=[runs, run_scores])


def _add_classes_v3(conn) -> None:
    """The class list with ``defect`` (id 1); every cell and box gets a class (``defect``); brush
    tiles hold class ids instead of 255; the boxes' unused ``category`` text goes (classes replace it).

    Columns are added only where missing: a project created now gets them from the version-1
    tables already, which are the current definitions."""
    metadata.create_all(conn, tables=[label_classes])
    conn.execute(insert(label_classes).values(id=DEFAULT_CLASS_ID, name=DEFAULT_CLASS_NAME, colour=PALETTE[0], position=0))

    def columns(table: str) -> set[str]:
        return {r[1] for r in conn.exec_driver_sql(f"PRAGMA table_info({table})")}

    for table in ("blocks", "boxes"):
        if "class_id" not in columns(table):
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN class_id INTEGER NOT NULL DEFAULT {DEFAULT_CLASS_ID}")
    if "category" in columns("boxes"):
        conn.exec_driver_sql("ALTER TABLE boxes DROP COLUMN category")
    for image_id, tr, tc, png in conn.execute(select(pixel_tiles.c.image_id, pixel_tiles.c.tile_row, pixel_tiles.c.tile_col,
                                                     pixel_tiles.c.png)).all():
        tile = _decode_tile(png)
        if tile is None:
            continue  # a damaged tile stays as it was: load_labels names it
        conn.execute(update(pixel_tiles).where((pixel_tiles.c.image_id == image_id) & (pixel_tiles.c.tile_row == tr)
                                               & (pixel_tiles.c.tile_col == tc))
                     .values(png=_encode_png(np.where(tile > 0, DEFAULT_CLASS_ID, 0).astype(np.uint8))))


MIGRATIONS: list[Migration] = [
    Migration(1, "images, reference masks, pixel tiles, blocks, rotated boxes, time spans", _create_v1),
    Migration(2, "training runs and their image scores", _create_v2),
    Migration(3, "defect classes: a class list, a class for every cell and box, class ids in brush tiles", _add_classes_v3),
]
SCHEMA_VERSION = MIGRATIONS[-1].version


def apply_migrations(conn, migrations: list[Migration] = MIGRATIONS) -> list[int]:
    """Bring a database up to the last migration; each step and its record commit together.

    Returns the versions applied. Raises :class:`NewerSchemaError` for a database made by a newer
    version of the software.
    """
    schema_migrations.create(conn, checkfirst=True)
    current = conn.execute(select(func.max(schema_migrations.c.version))).scalar() or 0
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise NewerSchemaError(
            f"this project uses schema version {current}, but this SemiREST Studio supports up to "
            f"version {latest}; update the software to open it"
        )
    applied = []
    for m in migrations:
        if m.version > current:
            m.apply(conn)
            conn.execute(insert(schema_migrations).values(version=m.version, description=m.description, applied_at=_now()))
            applied.append(m.version)
    return applied


# ---------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class NewImage:
    """An image to add: its file, a unique key for exports, and optional dataset facts."""

    path: Path
    key: str
    split: str | None = None
    defect_type: str | None = None
    reference_mask_path: Path | None = None


@dataclass(frozen=True)
class ImageRecord:
    id: int
    key: str
    path: str
    abs_path: str
    split: str | None
    defect_type: str | None
    width: int | None
    height: int | None
    position: int

    @property
    def hw(self) -> tuple[int, int] | None:
        return (self.height, self.width) if self.width and self.height else None


@dataclass(frozen=True)
class LabelSummary:
    """What the image list shows for one image."""

    pixel_count: int = 0
    block8: int = 0
    block16: int = 0
    boxes: int = 0
    seconds: float = 0.0

    @property
    def is_labelled(self) -> bool:
        return bool(self.pixel_count or self.block8 or self.block16 or self.boxes)

    def holds(self, label_type: str) -> bool:
        """True if the image has at least one label of ``label_type`` (one of LABEL_TYPES)."""
        counts = {"pixel": self.pixel_count, "block8": self.block8, "block16": self.block16, "box": self.boxes}
        if label_type not in counts:
            raise ValueError(f"unknown label type {label_type!r}; expected one of {', '.join(LABEL_TYPES)}")
        return counts[label_type] > 0


@dataclass(frozen=True)
class TimeSpan:
    image_id: int
    label_type: str
    annotator: str
    seconds: float
    started_at: str
    ended_at: str


class BadLabelError(ProjectError, ValueError):
    """A label value the project does not store (a box with a NaN or infinite coordinate)."""


def check_box(box: RotatedBox) -> None:
    """Refuse a box that is not finite with a positive size: stored, it would break every export
    and the trainer's masks."""
    vals = (box.cx, box.cy, box.width, box.height, box.angle)
    try:
        finite = all(math.isfinite(float(v)) for v in vals)
    except (TypeError, ValueError):
        finite = False
    if not finite or box.width <= 0 or box.height <= 0:
        raise BadLabelError(f"box (cx {box.cx}, cy {box.cy}, w {box.width}, h {box.height}, angle {box.angle}) "
                            "is not stored: coordinates must be finite and the size positive")


def _encode_png(a: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("could not encode a PNG")
    return buf.tobytes()


class CorruptLabelsError(ProjectError):
    """A stored label tile cannot be decoded (the file was damaged or edited by hand)."""


def _decode_tile(data) -> np.ndarray | None:
    """A brush tile: a 2-D PNG of at most TILE x TILE pixels, or None when it is not one."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        return None
    try:
        img = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_GRAYSCALE)
    except cv2.error:
        return None
    if img is None or img.ndim != 2 or img.shape[0] > TILE or img.shape[1] > TILE:
        return None
    return img


def _decode_png(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ProjectError("a label tile in the project is corrupt")
    return img


@dataclass(frozen=True)
class RunRecord:
    """One training run as stored (JSON columns decoded)."""

    id: int
    setting: str
    preset: str
    state: str
    config: dict
    label_snapshot: dict
    checkpoint: str | None
    metrics: dict
    message: str | None
    started_at: str
    finished_at: str | None
    duration_s: float | None


# ---------------------------------------------------------------------------------------- writer lock
class _WriterLock:
    """One program writes a project at a time: an exclusive ``flock`` on ``<project>.lock``.

    Why a separate lock file and ``flock``: SQLite's own locks live for one transaction, so two
    studios could both acknowledge edits and overwrite each other's 256-px tiles; and POSIX record
    locks (``fcntl``) on the database file are dropped when any descriptor of it is closed.
    ``flock`` belongs to the open file, dies with the process (a killed writer blocks nothing), and
    is counted per path here so the studio and its training worker share one lock."""

    _held: dict[str, list] = {}  # lock path -> [file descriptor, users]
    _guard = threading.Lock()

    @staticmethod
    def path_for(project: Path) -> Path:
        return project.with_name(project.name + ".lock")

    @classmethod
    def acquire(cls, project: Path) -> str | None:
        """Take (or share, within this process) the lock; None on success, else who holds it."""
        try:
            import fcntl
        except ImportError:  # Windows: SQLite's own locking only
            return None
        lock = cls.path_for(project)
        key = str(lock)
        with cls._guard:
            if key in cls._held:
                cls._held[key][1] += 1
                return None
            for _ in range(5):
                try:
                    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
                except OSError:
                    return None  # cannot make a lock file (read-only folder): opened read-only anyway
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    try:
                        holder = os.read(fd, 200).decode("utf-8", "replace").strip()
                    except OSError:
                        holder = ""
                    os.close(fd)
                    return holder or "another program"
                try:  # the holder may have removed the file between our open and our lock
                    same = os.fstat(fd).st_ino == os.stat(lock).st_ino
                except OSError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
                cls._held[key] = [fd, 1]
                return None
            return "another program"

    @classmethod
    def users(cls, project: Path) -> int:
        """How many opens of this process share the lock (0: not held)."""
        with cls._guard:
            entry = cls._held.get(str(cls.path_for(project)))
            return 0 if entry is None else entry[1]

    @classmethod
    def release(cls, project: Path) -> None:
        key = str(cls.path_for(project))
        with cls._guard:
            entry = cls._held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del cls._held[key]
                try:
                    os.unlink(key)  # still locked: a waiting opener re-checks the inode
                except OSError:
                    pass
                os.close(entry[0])


# ---------------------------------------------------------------------------------------- store

def _new_file(path: str | os.PathLike, advice: str) -> Path:
    """``path`` made absolute, refused if it exists or its folder does not: a new project file."""
    path = Path(os.path.abspath(path))
    if path.exists():
        raise ProjectError(f"{path}: already exists; {advice}")
    if not path.parent.is_dir():
        raise ProjectError(f"{path.parent}: folder does not exist")
    return path

class ProjectStore:
    """One open project file. Not thread-safe: use it from one thread (the GUI thread)."""

    def __init__(self, path: Path, engine, read_only: bool, read_only_reason: str = "", writer_lock: bool = False):
        self.path = path
        self.root = path.parent
        self.read_only = read_only
        self.read_only_reason = read_only_reason or (f"{path.name}: the project is open read-only" if read_only else "")
        self._engine = engine
        self._writer_lock = writer_lock

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, name: str | None = None) -> "ProjectStore":
        """Create a new, empty project file; refuses to overwrite an existing file."""
        path = Path(os.path.abspath(path))
        if path.exists():
            raise ProjectError(f"{path}: already exists; open it, or choose another file name")
        if not path.parent.is_dir():
            raise ProjectError(f"{path.parent}: folder does not exist")
        store = cls.open(path, create=True)
        store.set_meta("name", name or path.stem)
        store.set_meta("created_at", _now())
        return store

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        create: bool = False,
        read_only: bool = False,
        require_write: bool = False,
        migrations: list[Migration] = MIGRATIONS,
    ) -> "ProjectStore":
        """Open a project (creating it if ``create``). A project the user cannot write to, or that
        another program has open for writing, is opened read-only automatically; check
        :attr:`read_only` and :attr:`read_only_reason`. ``require_write``: refuse instead
        (:class:`ProjectLockedError`, :class:`ProjectReadOnlyError`)."""
        path = Path(os.path.abspath(path))
        if path.is_dir():
            raise NotAProjectError(f"{path}: is a folder; a project is a single .sqlite file")
        reason = ""
        if not path.exists():
            if not create:
                raise ProjectError(f"{path}: no such project file")
        elif not read_only and (not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK)):
            read_only, reason = True, f"{path.name}: the file or its folder is not writable, so the project is open read-only"
        if read_only and require_write:
            raise ProjectReadOnlyError(reason or f"{path.name}: the project is open read-only")
        locked = False
        if not read_only:
            holder = _WriterLock.acquire(path)
            if holder is not None:
                reason = (f"{path.name}: open for writing in another program ({holder}), so it is open "
                          "read-only here; close it there to edit")
                if require_write:
                    raise ProjectLockedError(reason)
                read_only = True
            else:
                locked = True
        try:
            return cls._open_locked(path, read_only, reason, locked, migrations)
        except BaseException:
            if locked:
                _WriterLock.release(path)
            raise

    @classmethod
    def _open_locked(cls, path: Path, read_only: bool, reason: str, locked: bool, migrations) -> "ProjectStore":
        # The file's header is checked by SQLite itself ("file is not a database"), never by opening
        # the file here: closing any descriptor of the database file releases every POSIX lock this
        # process holds on it (SQLite's "How To Corrupt", section 2.2), so another program would
        # think no connection lives and delete the live WAL with the edits in it.
        snapshot: list[str] = []
        engine = cls._make_engine(path, read_only, snapshot)
        store = cls(path, engine, read_only, reason, locked)
        try:
            with engine.connect() as conn:
                tables = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
            if snapshot:
                store.read_only_reason = (f"{path.name}: on a read-only file system (or folder), so the project is open "
                                          "read-only as it was last saved to the file")
            if tables and "schema_migrations" not in tables:
                raise NotAProjectError(f"{path}: an SQLite database, but not a SemiREST project")
            if read_only:
                with engine.connect() as conn:
                    current = conn.execute(select(func.max(schema_migrations.c.version))).scalar() or 0
                latest = migrations[-1].version
                if current > latest:
                    raise NewerSchemaError(
                        f"this project uses schema version {current}, but this SemiREST Studio "
                        f"supports up to version {latest}; update the software to open it"
                    )
                if current < latest:
                    raise ProjectReadOnlyError(
                        f"{path}: read-only, and it needs upgrading to schema version {latest}; "
                        "make it writable once"
                    )
            else:
                with store._write():
                    with engine.begin() as conn:
                        apply_migrations(conn, migrations)
                if locked and _WriterLock.users(path) == 1:
                    store._mark_interrupted_runs()
        except DBAPIError as exc:
            engine.dispose()
            if "not a database" in str(getattr(exc, "orig", exc)).lower():
                raise NotAProjectError(f"{path}: not a SemiREST project (not an SQLite database)") from None
            raise store._translate(exc) from None
        except BaseException:
            engine.dispose()
            raise
        return store

    INTERRUPTED = "interrupted: the program that ran it ended before the run did (killed, crashed or switched off)"

    def _mark_interrupted_runs(self) -> None:
        """Runs still 'running' when a writer opens the project first in its process: nothing
        else can be running them (one writer at a time), so they were interrupted; recorded as
        failed with that message, so the studio and ``project runs`` do not show them as running."""
        with self._tx() as conn:
            conn.execute(update(runs).where(runs.c.state == "running")
                         .values(state="failed", message=self.INTERRUPTED, finished_at=_now()))

    @classmethod
    def create_complete(cls, path: str | os.PathLike, fill: Callable[["ProjectStore"], None], name: str | None = None) -> Path:
        """Create a project that appears under ``path`` only once ``fill`` has run: it is built
        under a temporary name beside it, closed, then linked into place. A killed create leaves
        only the temporary file, which the next create removes, so nothing blocks the re-run."""
        path = _new_file(path, "open it, or choose another file name")
        tmp = path.with_name(f".{path.name}.creating")
        holder = _WriterLock.acquire(tmp)
        if holder is not None:
            raise ProjectLockedError(f"{path.name}: being created by another program ({holder})")
        leftovers = [tmp] + [Path(f"{tmp}{s}") for s in ("-wal", "-shm", "-journal")]
        try:
            for f in leftovers:
                f.unlink(missing_ok=True)
            store = cls.create(tmp, name=name or path.stem)
            try:
                fill(store)
            finally:
                store.close()
            try:
                os.link(tmp, path)  # never over a file made meanwhile
            except FileExistsError:
                raise ProjectError(f"{path}: already exists; open it, or choose another file name") from None
            except OSError:
                if path.exists():
                    raise ProjectError(f"{path}: already exists; open it, or choose another file name") from None
                os.replace(tmp, path)
        finally:
            for f in leftovers:
                f.unlink(missing_ok=True)
            _WriterLock.release(tmp)
        return path

    @staticmethod
    def _make_engine(path: Path, read_only: bool, snapshot: list | None = None):
        """``snapshot``: a list the read-only opener appends to when the file could only be read as
        an unchanging snapshot (SQLite's ``immutable`` URI): on a read-only file system a WAL-mode
        project cannot get its ``-shm`` file, so ``mode=ro`` fails."""
        def connect():
            if read_only:
                uri = f"file:{quote(path.as_posix())}?mode=ro"
                con = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=0.3)
                try:
                    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
                except sqlite3.OperationalError as exc:
                    if "unable to open" not in str(exc) and "readonly" not in str(exc).replace("-", "").replace(" ", ""):
                        raise
                    con.close()
                    con = sqlite3.connect(f"file:{quote(path.as_posix())}?immutable=1", uri=True, check_same_thread=False)
                    if snapshot is not None:
                        snapshot.append(str(exc))
            else:
                con = sqlite3.connect(str(path), check_same_thread=False, timeout=0.3)
            return con

        engine = create_engine("sqlite://", creator=connect, poolclass=StaticPool)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_con, _record):
            # pysqlite would not BEGIN before DDL, so a failed migration would leave half a schema;
            # take transaction control ourselves (the SQLAlchemy recipe for SQLite).
            dbapi_con.isolation_level = None
            cur = dbapi_con.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            # short: a healthy WAL writer holds the lock for milliseconds, and the GUI must not freeze
            cur.execute("PRAGMA busy_timeout=300")
            if not read_only:
                cur.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a committed edit survives an application crash or kill.
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN")

        return engine

    def close(self) -> None:
        """Close the project; a writer first moves the WAL's edits into the file, so the project
        file alone (copied, backed up) holds every saved edit even while another connection of this
        process (the training worker) is still open."""
        if not self.read_only:
            try:
                with self._engine.connect() as conn:
                    conn.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except (DBAPIError, sqlite3.Error):
                pass  # a reader holds the WAL: SQLite checkpoints when the last connection closes
        self._engine.dispose()
        if self._writer_lock:
            self._writer_lock = False
            _WriterLock.release(self.path)

    def save_copy(self, dst: str | os.PathLike) -> Path:
        """One self-contained project file at ``dst`` with every committed edit (SQLite's ``VACUUM
        INTO``: a consistent snapshot, also while the studio writes, WAL included). Image, mask and
        checkpoint paths are made relative to the copy's folder; an existing ``dst`` is refused."""
        dst = _new_file(dst, "choose another file name")
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.copy")
        for leftover in (tmp, Path(f"{tmp}-journal")):
            leftover.unlink(missing_ok=True)
        paths = [(r.id, self.image_path(r)) for r in self.images()]
        with self._engine.connect() as conn:
            refs = conn.execute(select(reference_masks.c.image_id, reference_masks.c.path, reference_masks.c.abs_path)
                                .where(reference_masks.c.path.is_not(None))).all()
            ckpts = conn.execute(select(runs.c.id, runs.c.checkpoint).where(runs.c.checkpoint.is_not(None))).all()
        try:
            try:
                with self._engine.connect() as conn:  # outside a transaction, which VACUUM refuses
                    conn.connection.dbapi_connection.execute("VACUUM INTO ?", (str(tmp),))
            except (DBAPIError, sqlite3.Error) as exc:
                raise ProjectError(f"{dst}: could not write the copy ({getattr(exc, 'orig', exc)})") from None

            def rel(p: Path) -> str:
                try:
                    return Path(os.path.relpath(os.path.abspath(p), dst.parent)).as_posix()
                except ValueError:
                    return Path(os.path.abspath(p)).as_posix()

            con = sqlite3.connect(str(tmp))
            try:
                con.executemany("UPDATE images SET path = ? WHERE id = ?", [(rel(p), i) for i, p in paths])
                con.executemany("UPDATE reference_masks SET path = ? WHERE image_id = ?",
                                [(rel(self.resolve(r, a)), i) for i, r, a in refs])
                con.executemany("UPDATE runs SET checkpoint = ? WHERE id = ?", [(rel(self.resolve(c)), i) for i, c in ckpts])
                con.commit()
                con.execute("PRAGMA journal_mode=DELETE").fetchall()
            finally:
                con.close()
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, dst)  # never replaces a file made meanwhile
            except FileExistsError:
                raise ProjectError(f"{dst}: already exists; choose another file name") from None
            except OSError:
                os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
        return dst

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` for a sound file, else the problems."""
        with self._engine.connect() as conn:
            rows = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check")]
        return "ok" if rows == ["ok"] else "; ".join(rows)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- error translation ----------------------------------------------------------------------
    def _translate(self, exc: Exception) -> ProjectError:
        msg = str(getattr(exc, "orig", exc)).lower()
        if "locked" in msg or "busy" in msg:
            return ProjectLockedError(
                f"{self.path.name}: the project is locked by another program (another SemiREST "
                "Studio?); your edit is kept and will be saved when the lock is released"
            )
        if "readonly" in msg or "read-only" in msg or "attempt to write" in msg:
            return ProjectReadOnlyError(f"{self.path.name}: the project file is read-only; edits cannot be saved")
        if "disk is full" in msg or "disk i/o" in msg or "no space" in msg:
            return ProjectDiskFullError(
                f"{self.path.name}: the disk is full (or failing); your edit is kept in the window and "
                "will be saved when space is freed"
            )
        if "not a database" in msg or "malformed" in msg:
            return NotAProjectError(f"{self.path.name}: not a SemiREST project or the file is damaged ({msg})")
        return ProjectWriteError(f"{self.path.name}: could not save ({msg})")

    @contextmanager
    def _write(self):
        if self.read_only:
            raise ProjectReadOnlyError(f"{self.read_only_reason}; edits cannot be saved")
        try:
            yield
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise self._translate(exc) from None

    @contextmanager
    def _tx(self):
        """One committed transaction for a write."""
        with self._write():
            with self._engine.begin() as conn:
                yield conn

    # -- meta -----------------------------------------------------------------------------------
    def schema_version(self) -> int:
        with self._engine.connect() as conn:
            return conn.execute(select(func.max(schema_migrations.c.version))).scalar() or 0

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._engine.connect() as conn:
            v = conn.execute(select(project_meta.c.value).where(project_meta.c.key == key)).scalar()
        return default if v is None else v

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as conn:
            conn.execute(delete(project_meta).where(project_meta.c.key == key))
            conn.execute(insert(project_meta).values(key=key, value=value))

    # -- images ---------------------------------------------------------------------------------
    def _rel(self, p: Path) -> str:
        p = os.path.abspath(p)
        try:
            return Path(os.path.relpath(p, self.root)).as_posix()
        except ValueError:  # another drive on Windows
            return Path(p).as_posix()

    def resolve(self, rel: str, abs_path: str | None = None) -> Path:
        p = Path(rel)
        if not p.is_absolute():
            p = self.root / p
        if not p.exists() and abs_path and Path(abs_path).exists():
            return Path(abs_path)
        return p

    def add_images(self, new: Iterable[NewImage]) -> list[int]:
        """Add images (and their reference masks) in one transaction. Keys must be unique."""
        new = list(new)
        ids = []
        with self._tx() as conn:
            pos = conn.execute(select(func.max(images.c.position))).scalar()
            pos = -1 if pos is None else pos
            existing = set(conn.execute(select(images.c.key)).scalars())
            for n in new:
                if n.key in existing:
                    raise ProjectError(f"an image with key {n.key!r} is already in the project")
                existing.add(n.key)
                pos += 1
                res = conn.execute(
                    insert(images).values(
                        key=n.key,
                        path=self._rel(n.path),
                        abs_path=Path(os.path.abspath(n.path)).as_posix(),
                        split=n.split,
                        defect_type=n.defect_type,
                        position=pos,
                        added_at=_now(),
                    )
                )
                image_id = res.inserted_primary_key[0]
                ids.append(image_id)
                if n.reference_mask_path is not None:
                    conn.execute(
                        insert(reference_masks).values(
                            image_id=image_id,
                            path=self._rel(n.reference_mask_path),
                            abs_path=Path(os.path.abspath(n.reference_mask_path)).as_posix(),
                        )
                    )
        return ids

    def images(self) -> list[ImageRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(images).order_by(images.c.position)).mappings().all()
        return [self._record(r) for r in rows]

    def image(self, image_id: int) -> ImageRecord:
        with self._engine.connect() as conn:
            r = conn.execute(select(images).where(images.c.id == image_id)).mappings().first()
        if r is None:
            raise ProjectError(f"no image with id {image_id} in the project")
        return self._record(r)

    @staticmethod
    def _record(r) -> ImageRecord:
        return ImageRecord(
            r["id"], r["key"], r["path"], r["abs_path"], r["split"], r["defect_type"], r["width"], r["height"], r["position"]
        )

    def image_path(self, rec: ImageRecord) -> Path:
        return self.resolve(rec.path, rec.abs_path)

    def set_image_size(self, image_id: int, width: int, height: int) -> None:
        if self.read_only:
            return  # a cache only; never worth an error
        with self._tx() as conn:
            conn.execute(update(images).where(images.c.id == image_id).values(width=width, height=height))

    def image_hw(self, rec: ImageRecord) -> tuple[int, int]:
        """The image's (height, width), reading the file once (and recording its size) if the
        project does not know it yet."""
        if rec.hw is not None:
            return rec.hw
        img = read_image(self.image_path(rec))
        self.set_image_size(rec.id, img.shape[1], img.shape[0])
        return img.shape[:2]

    # -- reference masks ------------------------------------------------------------------------
    def reference_mask_paths(self) -> list[Path]:
        """The files of the reference masks stored as paths (not blobs)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(reference_masks.c.path, reference_masks.c.abs_path)
                                .where(reference_masks.c.path.is_not(None))).all()
        return [self.resolve(r, a) for r, a in rows]

    def reference_ids(self) -> set[int]:
        """The images that have a reference mask (one query, for whole-project decisions)."""
        with self._engine.connect() as conn:
            return {r for (r,) in conn.execute(select(reference_masks.c.image_id))}

    def has_reference(self, image_id: int) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(select(reference_masks.c.image_id).where(reference_masks.c.image_id == image_id)).first() is not None

    def reference_mask(self, image_id: int, hw: tuple[int, int] | None = None) -> np.ndarray | None:
        """The reference (ground-truth) mask, bool, or None if the image has none."""
        with self._engine.connect() as conn:
            r = conn.execute(select(reference_masks).where(reference_masks.c.image_id == image_id)).mappings().first()
        if r is None:
            return None
        if r["png"] is not None:
            m = _decode_png(r["png"]) > 0
            if hw is not None and m.shape != tuple(hw):
                raise ProjectError(f"reference mask of image {image_id} does not match the image size")
            return m
        return read_mask(self.resolve(r["path"], r["abs_path"]), expected_hw=hw)

    def set_reference_mask(self, image_id: int, mask: np.ndarray) -> None:
        with self._tx() as conn:
            conn.execute(delete(reference_masks).where(reference_masks.c.image_id == image_id))
            conn.execute(insert(reference_masks).values(image_id=image_id, png=_encode_png(mask.astype(np.uint8) * 255)))

    # -- labels ---------------------------------------------------------------------------------
    def load_labels(self, image_id: int, hw: tuple[int, int], skip_corrupt: bool = False) -> ImageLabels:
        """The image's labels. A damaged brush tile raises :class:`CorruptLabelsError` naming the
        image and tile; ``skip_corrupt`` (the studio) leaves such tiles out and lists them in
        ``labels.problems`` instead."""
        labels = ImageLabels(hw)
        h, w = hw
        with self._engine.connect() as conn:
            known = np.zeros(256, dtype=bool)
            known[[i for i in conn.execute(select(label_classes.c.id)).scalars() if 0 < i < 256]] = True
            for r in conn.execute(select(pixel_tiles).where(pixel_tiles.c.image_id == image_id)).mappings():
                tr, tc = r["tile_row"], r["tile_col"]
                tile = _decode_tile(r["png"])
                if tile is None or not (isinstance(tr, int) and isinstance(tc, int) and tr >= 0 and tc >= 0):
                    key = conn.execute(select(images.c.key).where(images.c.id == image_id)).scalar()
                    problem = (f"{self.path.name}: the brush labels of image {key!r} (tile row {tr}, column {tc}) are "
                               "damaged and cannot be read; the image's other labels are intact")
                    if not skip_corrupt:
                        raise CorruptLabelsError(problem)
                    labels.problems.append(problem)
                    continue
                y0, x0 = tr * TILE, tc * TILE
                th, tw = min(tile.shape[0], h - y0), min(tile.shape[1], w - x0)
                if th > 0 and tw > 0:
                    part = tile[:th, :tw]  # class ids; a value that names no class is the default class
                    labels.pixels[y0 : y0 + th, x0 : x0 + tw] = np.where(known[part] | (part == 0), part, DEFAULT_CLASS_ID)
            for g, r_, c, k in conn.execute(select(blocks.c.grid, blocks.c.row, blocks.c.col, blocks.c.class_id)
                                            .where(blocks.c.image_id == image_id)):
                labels.blocks[g].add((r_, c))
                if k != DEFAULT_CLASS_ID:
                    labels.block_classes[(g, r_, c)] = k
            for r in conn.execute(select(boxes).where(boxes.c.image_id == image_id).order_by(boxes.c.id)).mappings():
                labels.boxes[r["id"]] = RotatedBox(r["cx"], r["cy"], r["width"], r["height"], r["angle"])
                if r["class_id"] != DEFAULT_CLASS_ID:
                    labels.box_classes[r["id"]] = r["class_id"]
        return labels

    @staticmethod
    def _tile_rows(image_id: int, mask: np.ndarray, rect: tuple[int, int, int, int]):
        """(tile_row, tile_col, png or None) for every tile meeting rect = (x0, y0, x1, y1)."""
        h, w = mask.shape
        x0, y0, x1, y1 = max(0, rect[0]), max(0, rect[1]), min(w, rect[2]), min(h, rect[3])
        if x1 <= x0 or y1 <= y0:
            return []
        out = []
        for tr in range(y0 // TILE, (y1 - 1) // TILE + 1):
            for tc in range(x0 // TILE, (x1 - 1) // TILE + 1):
                tile = mask[tr * TILE : (tr + 1) * TILE, tc * TILE : (tc + 1) * TILE]
                n = int(np.count_nonzero(tile))
                out.append((tr, tc, _encode_png(tile.astype(np.uint8)) if n else None, n))  # values: class ids
        return out

    def save_pixel_region(self, image_id: int, mask: np.ndarray, rect: tuple[int, int, int, int] | None = None) -> None:
        """Commit the brush mask inside ``rect`` (x0, y0, x1, y1; whole image if None)."""
        if rect is None:
            rect = (0, 0, mask.shape[1], mask.shape[0])
        rows = self._tile_rows(image_id, mask, rect)
        with self._tx() as conn:
            self._write_tiles(conn, image_id, rows)

    @staticmethod
    def _write_tiles(conn, image_id: int, rows) -> None:
        for tr, tc, png, n in rows:
            conn.execute(
                delete(pixel_tiles).where(
                    (pixel_tiles.c.image_id == image_id) & (pixel_tiles.c.tile_row == tr) & (pixel_tiles.c.tile_col == tc)
                )
            )
            if png is not None:
                conn.execute(insert(pixel_tiles).values(image_id=image_id, tile_row=tr, tile_col=tc, png=png, pixel_count=n))

    def set_blocks(self, image_id: int, grid: int, on: Iterable[tuple[int, int]] = (), off: Iterable[tuple[int, int]] = (),
                   class_id: int = DEFAULT_CLASS_ID) -> None:
        """Turn cells of one grid on (as ``class_id``, also a cell that was on with another class)
        and off, in one transaction."""
        if grid not in (8, 16):
            raise ValueError(f"grid must be 8 or 16, got {grid}")
        on, off = list(on), list(off)
        with self._tx() as conn:
            for r, c in off:
                conn.execute(
                    delete(blocks).where(
                        (blocks.c.image_id == image_id) & (blocks.c.grid == grid) & (blocks.c.row == r) & (blocks.c.col == c)
                    )
                )
            if on:
                conn.exec_driver_sql(
                    "INSERT OR REPLACE INTO blocks (image_id, grid, row, col, class_id) VALUES (?, ?, ?, ?, ?)",
                    [(image_id, grid, int(r), int(c), int(class_id)) for r, c in on],
                )

    def add_box(self, image_id: int, box: RotatedBox, box_id: int | None = None, class_id: int = DEFAULT_CLASS_ID) -> int:
        """Insert a box; ``box_id`` restores a deleted box under its old id (undo)."""
        check_box(box)
        values = dict(image_id=image_id, cx=box.cx, cy=box.cy, width=box.width, height=box.height, angle=box.angle,
                      updated_at=_now(), class_id=int(class_id))
        if box_id is not None:
            values["id"] = box_id
        with self._tx() as conn:
            return conn.execute(insert(boxes).values(**values)).inserted_primary_key[0]

    def update_box(self, box_id: int, box: RotatedBox) -> None:
        check_box(box)
        with self._tx() as conn:
            conn.execute(
                update(boxes)
                .where(boxes.c.id == box_id)
                .values(cx=box.cx, cy=box.cy, width=box.width, height=box.height, angle=box.angle, updated_at=_now())
            )

    def delete_box(self, box_id: int) -> None:
        with self._tx() as conn:
            conn.execute(delete(boxes).where(boxes.c.id == box_id))

    def replace_labels(self, image_id: int, labels: ImageLabels) -> dict[int, int]:
        """Write the whole label state of one image in one transaction (retries after a failed
        save). Box ids are kept where given; returns {old id: stored id}."""
        return self.replace_labels_many({image_id: labels})[image_id]

    def replace_labels_many(self, labels_of: dict[int, ImageLabels], new_classes: Iterable[LabelClass] = ()) -> dict[int, dict[int, int]]:
        """The whole label state of several images in ONE transaction (an import is all or
        nothing, also when killed); returns {image id: {old box id: stored id}}. ``new_classes``
        (from :meth:`classes_for`) are added in the same transaction."""
        new_classes = list(new_classes)
        prepared = []
        for image_id, labels in labels_of.items():
            for b in labels.boxes.values():
                check_box(b)
            mask = labels.pixels
            rows = self._tile_rows(image_id, mask, (0, 0, mask.shape[1], mask.shape[0]))
            prepared.append((image_id, labels, [r for r in rows if r[2] is not None]))
        out: dict[int, dict[int, int]] = {}
        with self._tx() as conn:
            for k in new_classes:
                conn.execute(insert(label_classes).values(id=k.id, name=k.name, colour=k.colour, position=k.position))
            for image_id, labels, rows in prepared:
                ids = out[image_id] = {}
                h, w = labels.hw  # the labels' size is the image's: kept with them
                conn.execute(update(images).where((images.c.id == image_id) & ((images.c.width.is_(None)) | (images.c.height.is_(None))))
                             .values(width=int(w), height=int(h)))
                conn.execute(delete(pixel_tiles).where(pixel_tiles.c.image_id == image_id))
                self._write_tiles(conn, image_id, rows)
                conn.execute(delete(blocks).where(blocks.c.image_id == image_id))
                cells = [(image_id, g, int(r), int(c), labels.block_class(g, (r, c))) for g in (8, 16) for r, c in labels.blocks[g]]
                if cells:
                    conn.exec_driver_sql("INSERT INTO blocks (image_id, grid, row, col, class_id) VALUES (?, ?, ?, ?, ?)", cells)
                conn.execute(delete(boxes).where(boxes.c.image_id == image_id))
                for old_id, b in labels.boxes.items():
                    values = dict(image_id=image_id, cx=b.cx, cy=b.cy, width=b.width, height=b.height, angle=b.angle,
                                  updated_at=_now(), class_id=labels.box_class(old_id))
                    if old_id is not None and old_id >= 0:
                        values["id"] = old_id
                    ids[old_id] = conn.execute(insert(boxes).values(**values)).inserted_primary_key[0]
        return out

    # -- classes --------------------------------------------------------------------------------
    def classes(self) -> list[LabelClass]:
        """The project's classes in list order; the first is the default class (id 1)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(label_classes).order_by(label_classes.c.position, label_classes.c.id)).mappings().all()
        return [LabelClass(r["id"], r["name"], r["colour"], r["position"]) for r in rows]

    def label_class(self, class_id: int) -> LabelClass:
        for k in self.classes():
            if k.id == class_id:
                return k
        raise ProjectError(f"no class with id {class_id} in the project")

    def _check_new_name(self, name, keep_id: int | None = None) -> str:
        try:
            name = check_class_name(name)
        except ClassNameError as exc:
            raise ProjectError(str(exc)) from None
        for k in self.classes():
            if k.name.casefold() == name.casefold() and k.id != keep_id:
                raise ProjectError(f"a class named {k.name!r} is already in the project")
        return name

    def add_class(self, name: str, colour: str | None = None) -> LabelClass:
        """A new class at the end of the list (colour: the next of the palette unless given)."""
        name = self._check_new_name(name)
        (k,) = self.classes_for([name])[1]
        if colour is not None:
            try:
                k = LabelClass(k.id, k.name, check_colour(colour), k.position)
            except ClassNameError as exc:
                raise ProjectError(str(exc)) from None
        with self._tx() as conn:
            conn.execute(insert(label_classes).values(id=k.id, name=k.name, colour=k.colour, position=k.position))
        return k

    def rename_class(self, class_id: int, name: str) -> None:
        self.label_class(class_id)
        name = self._check_new_name(name, keep_id=class_id)
        with self._tx() as conn:
            conn.execute(update(label_classes).where(label_classes.c.id == class_id).values(name=name))

    def set_class_colour(self, class_id: int, colour: str) -> None:
        self.label_class(class_id)
        try:
            colour = check_colour(colour)
        except ClassNameError as exc:
            raise ProjectError(str(exc)) from None
        with self._tx() as conn:
            conn.execute(update(label_classes).where(label_classes.c.id == class_id).values(colour=colour))

    def classes_for(self, names: Iterable[str]) -> tuple[dict[str, int], list[LabelClass]]:
        """({name: class id}, classes to add) for names an import brings: a name matches a class
        of the project case-insensitively; the others get the next ids, positions and palette
        colours, for :meth:`replace_labels_many` to add in the import's own transaction."""
        have = self.classes()
        by_name = {k.name.casefold(): k.id for k in have}
        next_id = max((k.id for k in have), default=0) + 1
        next_pos = max((k.position for k in have), default=-1) + 1
        ids: dict[str, int] = {}
        new: list[LabelClass] = []
        for name in names:
            if name.casefold() in by_name:
                ids[name] = by_name[name.casefold()]
                continue
            if len(have) + len(new) >= MAX_CLASSES:
                raise ProjectError(f"class {name!r} would be class {MAX_CLASSES + 1}; a project holds at most {MAX_CLASSES}")
            k = LabelClass(next_id, name, PALETTE[(len(have) + len(new)) % len(PALETTE)], next_pos)
            new.append(k)
            by_name[name.casefold()] = ids[name] = k.id
            next_id += 1
            next_pos += 1
        return ids, new

    # -- timing ---------------------------------------------------------------------------------
    def add_time_span(self, span: TimeSpan) -> None:
        if span.label_type not in LABEL_TYPES:
            raise ValueError(f"unknown label type {span.label_type!r}")
        with self._tx() as conn:
            conn.execute(insert(time_spans).values(**span.__dict__))

    def time_spans(self) -> list[TimeSpan]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(time_spans).order_by(time_spans.c.id)).mappings().all()
        return [TimeSpan(r["image_id"], r["label_type"], r["annotator"], r["seconds"], r["started_at"], r["ended_at"]) for r in rows]

    def time_totals(self, image_id: int | None = None) -> dict[int, dict[str, float]]:
        """Seconds of active time, {image id: {label type: seconds}}."""
        q = select(time_spans.c.image_id, time_spans.c.label_type, func.sum(time_spans.c.seconds)).group_by(
            time_spans.c.image_id, time_spans.c.label_type
        )
        if image_id is not None:
            q = q.where(time_spans.c.image_id == image_id)
        out: dict[int, dict[str, float]] = {}
        with self._engine.connect() as conn:
            for i, t, s in conn.execute(q):
                out.setdefault(i, {})[t] = float(s)
        return out

    # -- summaries ------------------------------------------------------------------------------
    def summaries(self) -> dict[int, LabelSummary]:
        """Per image: labelled pixels, cells, boxes and seconds, in four grouped queries."""
        acc: dict[int, dict] = {}
        with self._engine.connect() as conn:
            for i, n in conn.execute(select(pixel_tiles.c.image_id, func.sum(pixel_tiles.c.pixel_count)).group_by(pixel_tiles.c.image_id)):
                acc.setdefault(i, {})["pixel_count"] = int(n)
            for i, g, n in conn.execute(select(blocks.c.image_id, blocks.c.grid, func.count()).group_by(blocks.c.image_id, blocks.c.grid)):
                acc.setdefault(i, {})[f"block{g}"] = int(n)
            for i, n in conn.execute(select(boxes.c.image_id, func.count()).group_by(boxes.c.image_id)):
                acc.setdefault(i, {})["boxes"] = int(n)
            for i, s in conn.execute(select(time_spans.c.image_id, func.sum(time_spans.c.seconds)).group_by(time_spans.c.image_id)):
                acc.setdefault(i, {})["seconds"] = float(s)
        return {i: LabelSummary(**v) for i, v in acc.items()}

    def classes_by_image(self) -> dict[int, set[int]]:
        """Per image: the class ids of its cells and boxes, in two grouped queries (brush pixels
        keep their classes inside PNG tiles, too slow to read for a whole project)."""
        out: dict[int, set[int]] = {}
        with self._engine.connect() as conn:
            for table in (blocks, boxes):
                for i, k in conn.execute(select(table.c.image_id, table.c.class_id).distinct()):
                    out.setdefault(i, set()).add(int(k))
        return out

    def summary(self, image_id: int) -> LabelSummary:
        return self.summaries().get(image_id, LabelSummary())

    # -- training runs --------------------------------------------------------------------------
    def create_run(self, setting: str, preset: str, config: dict, label_snapshot: dict) -> int:
        """A new run in state ``running``; returns its id."""
        import json

        with self._tx() as conn:
            return conn.execute(insert(runs).values(
                setting=setting, preset=preset, state="running", config=json.dumps(config),
                label_snapshot=json.dumps(label_snapshot), started_at=_now())).inserted_primary_key[0]

    def finish_run(self, run_id: int, state: str, duration_s: float | None = None, checkpoint: str | os.PathLike | None = None,
                   metrics: dict | None = None, message: str | None = None) -> None:
        """Record how a run ended (finished, cancelled or failed)."""
        import json

        if state not in RUN_STATES:
            raise ValueError(f"unknown run state {state!r}")
        values = dict(state=state, finished_at=_now(), duration_s=duration_s, message=message)
        if checkpoint is not None:
            values["checkpoint"] = self._rel(Path(checkpoint))
        if metrics is not None:
            values["metrics"] = json.dumps(metrics)
        with self._tx() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(**values))

    def set_run_metrics(self, run_id: int, metrics: dict) -> None:
        import json

        with self._tx() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(metrics=json.dumps(metrics)))

    def runs(self) -> list[RunRecord]:
        import json

        with self._engine.connect() as conn:
            rows = conn.execute(select(runs).order_by(runs.c.id)).mappings().all()
        return [RunRecord(r["id"], r["setting"], r["preset"], r["state"], json.loads(r["config"]),
                          json.loads(r["label_snapshot"]), r["checkpoint"], json.loads(r["metrics"] or "{}"),
                          r["message"], r["started_at"], r["finished_at"], r["duration_s"]) for r in rows]

    def run(self, run_id: int) -> RunRecord:
        for r in self.runs():
            if r.id == run_id:
                return r
        raise ProjectError(f"no run with id {run_id} in the project")

    def run_checkpoint_path(self, rec: RunRecord) -> Path | None:
        return None if rec.checkpoint is None else self.resolve(rec.checkpoint)

    def set_run_scores(self, run_id: int, scores: dict[int, float]) -> None:
        """Image-level scores of a run, {image id: score}, replacing earlier ones of that run."""
        with self._tx() as conn:
            conn.execute(delete(run_scores).where(run_scores.c.run_id == run_id))
            if scores:
                conn.execute(insert(run_scores), [dict(run_id=run_id, image_id=int(i), score=float(v)) for i, v in scores.items()])

    def run_scores(self, run_id: int) -> dict[int, float]:
        with self._engine.connect() as conn:
            return {i: float(v) for i, v in conn.execute(
                select(run_scores.c.image_id, run_scores.c.score).where(run_scores.c.run_id == run_id))}
