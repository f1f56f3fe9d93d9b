#!/usr/bin/env bash
# Build the one-folder package: packaging/dist/semirest-studio/{semirest-studio,semirest,...}
#
#   packaging/build.sh                 uses ./.venv (or $PYTHON); installs PyInstaller there if missing
#   SEMIREST_WITH_TORCH=1 packaging/build.sh    include PyTorch (training in the package; several GB)
#
# Then it starts the result headless: --version, and --self-check (a temporary project, the
# window, three edits, a normal quit), and prints the folder size and the start times.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
"$PYTHON" -c "import PyInstaller" 2>/dev/null || "$PYTHON" -m pip install -e "$ROOT[packaging]"
# a plain copy of the package as installed (semirest/core, semirest/app): PyInstaller does not
# follow setuptools' editable-install finder reliably
rm -rf "$HERE/build/src" && mkdir -p "$HERE/build/src/semirest"
cp -r "$ROOT/core" "$HERE/build/src/semirest/core"
cp -r "$ROOT/app" "$HERE/build/src/semirest/app"
find "$HERE/build/src" -name __pycache__ -prune -exec rm -rf {} +
cd "$HERE"
"$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
    --workpath "$HERE/build" --distpath "$HERE/dist" semirest-studio.spec
APP="$HERE/dist/semirest-studio"
export QT_QPA_PLATFORM=offscreen
t0=$(date +%s.%N); "$APP/semirest-studio" --version; t1=$(date +%s.%N)
"$APP/semirest-studio" --self-check; t2=$(date +%s.%N)
"$APP/semirest" --version
echo "size: $(du -sm "$APP" | cut -f1) MB in $APP"
echo "start: --version $(echo "$t1 - $t0" | bc) s, --self-check $(echo "$t2 - $t1" | bc) s"
