"""The studio's per-user settings (view options), in one ini file of the user's config folder."""
from __future__ import annotations

from PySide6.QtCore import QSettings

KEEP_ZOOM = "view/keep_zoom"


def studio_settings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "SemiREST", "SemiREST Studio")


def read_bool(key: str, default: bool = False) -> bool:
    value = studio_settings().value(key, default)
    return value if isinstance(value, bool) else str(value).lower() in ("true", "1")


def write_bool(key: str, value: bool) -> None:
    s = studio_settings()
    s.setValue(key, bool(value))
    s.sync()
