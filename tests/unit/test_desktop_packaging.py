"""The PyInstaller spec, its entry scripts, the .desktop entry and pyproject's scripts agree.

The build itself (packaging/build.sh, about two minutes) is not part of the test suite."""
from __future__ import annotations

import configparser
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _entry_import(script: Path) -> str:
    m = re.search(r"^from (\S+) import (\w+)$", script.read_text(), re.M)
    assert m, f"{script} imports no entry function"
    return f"{m.group(1)}:{m.group(2)}"


def test_entry_scripts_match_pyproject():
    assert PYPROJECT["project"]["gui-scripts"] == {"semirest-studio": _entry_import(REPO / "packaging" / "entry_studio.py")}
    assert PYPROJECT["project"]["scripts"] == {"semirest": _entry_import(REPO / "packaging" / "entry_cli.py")}


def test_spec_builds_both_entry_points_and_ships_the_resources():
    spec = (REPO / "packaging" / "semirest-studio.spec").read_text()
    for script in re.findall(r'analysis\("([^"]+)"\)', spec):
        assert (REPO / "packaging" / script).is_file(), script
    assert set(re.findall(r'exe\(\w+, "([^"]+)"', spec)) == {"semirest-studio", "semirest"}
    for rel in re.findall(r'ROOT / "resources" / "([^"]+)"', spec):
        assert (REPO / "resources" / rel).is_file(), rel
    ignored = (REPO / ".gitignore").read_text().split()
    assert "/packaging/build/" in ignored and "/packaging/dist/" in ignored


def test_spec_ships_onnxruntime_and_the_inspect_command_but_not_openvino():
    """`semirest inspect --model detector.onnx` runs from the folder without torch: the lazily
    imported command modules are hidden imports and onnxruntime's libraries and data are collected."""
    spec = (REPO / "packaging" / "semirest-studio.spec").read_text()
    hidden = re.search(r"^hidden = \[(.*?)\]$", spec, re.M | re.S).group(1)
    for module in ("semirest.core.cli.inspect", "semirest.core.deploy", "onnxruntime"):
        assert f'"{module}"' in hidden, module
    assert 'collect_data_files("onnxruntime")' in spec and 'collect_dynamic_libs("onnxruntime")' in spec
    assert re.search(r"binaries=ONNXRUNTIME_LIBS", spec)
    always_out = re.search(r"^ALWAYS_OUT = \[(.*?)\]$", spec, re.M | re.S).group(1)
    assert '"openvino"' in always_out and '"onnxruntime"' not in always_out
    torch_family = re.search(r"^TORCH_FAMILY = \[(.*?)\]$", spec, re.M | re.S).group(1)
    assert '"tqdm"' not in torch_family + always_out  # inspect's progress bar
    assert "openvino" in PYPROJECT["project"]["optional-dependencies"]
    # optional for users (an extra, never a dependency), installed for the tests so CI runs them
    assert not any("openvino" in d for d in PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert [d for d in extras["test"] if d.startswith("openvino")] == extras["openvino"]


def test_desktop_entry_is_valid_and_names_the_gui_script_and_icon():
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    cp.read(REPO / "resources" / "semirest-studio.desktop", encoding="utf-8")
    e = cp["Desktop Entry"]
    assert e["Type"] == "Application" and e["Terminal"] == "false"
    assert e["Exec"].split()[0] in PYPROJECT["project"]["gui-scripts"]
    assert e["TryExec"] == e["Exec"].split()[0]
    assert (REPO / "resources" / f"{e['Icon']}.png").is_file()
    assert e["Categories"].endswith(";")


def test_icon_is_a_square_png_with_alpha():
    import cv2

    img = cv2.imread(str(REPO / "resources" / "semirest-studio.png"), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape == (256, 256, 4)


def test_studio_version_and_self_check(tmp_path):
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    v = subprocess.run([sys.executable, "-m", "semirest.app.main", "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert v.returncode == 0 and v.stdout.strip() == f"semirest-studio {PYPROJECT['project']['version']}"
    r = subprocess.run([sys.executable, "-m", "semirest.app.main", "--self-check"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "self-check ok" in r.stdout


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "timm", "faiss", "torchvision"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from semirest.core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_without_torch_says_what_is_missing(tmp_path):
    """The desktop package leaves PyTorch out: `semirest train` must say so, and the project
    commands must still work (run in a subprocess where importing torch fails)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    run = lambda *a: subprocess.run([sys.executable, "-c", BLOCK_TORCH, *a], capture_output=True, text=True, env=env, timeout=60)  # noqa: E731
    r = run("train", "--data", str(tmp_path), "--category", "x", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "this command needs torch, which this build does not include" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = run("project", "info", str(tmp_path / "missing.sqlite"))
    assert r.returncode == 2 and "no such project file" in r.stderr and "Traceback" not in r.stderr
