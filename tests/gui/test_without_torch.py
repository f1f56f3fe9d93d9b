"""The studio opens, edits and saves without PyTorch (the desktop package ships without it)."""
from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = r'''
import builtins, sys
real = builtins.__import__
def block(name, *a, **k):
    if name == "torch" or name.startswith("torch."):
        raise ImportError("No module named 'torch'")
    return real(name, *a, **k)
builtins.__import__ = block
from semirest.app import main as m
from semirest.app.main_window import make_train_dock
from PySide6.QtWidgets import QApplication
app = QApplication.instance() or QApplication([])
panel = make_train_dock(None, None)
print("panel", type(panel).__name__, "PyTorch is not installed" in panel.label.text())
panel.start(); panel.retrain(); panel.cancel(); panel.image_changed(); panel.shutdown()
sys.argv = ["semirest-studio", "--self-check"]
sys.exit(m.main())
'''


def test_studio_self_check_without_torch():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "panel NoTrainingPanel True" in r.stdout
    assert "self-check ok" in r.stdout + r.stderr
