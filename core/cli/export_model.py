"""`semirest export-model`: the command (parser registration and arguments); the export itself is
:mod:`semirest.core.train.export`, imported only when the command runs (it needs torch), so the
parser also builds where torch is absent.
"""
from __future__ import annotations

import sys
from pathlib import Path


def cmd_export_model(args) -> int:
    from semirest.core.cli.common import CliError
    from semirest.core.train.checkpoint import CheckpointError
    from semirest.core.cli.train import CHECKPOINT_NAME

    if bool(args.run) == bool(args.checkpoint):
        raise CliError("give one of --run RUN_DIR or --checkpoint FILE")
    ckpt = Path(args.run) / CHECKPOINT_NAME if args.run else Path(args.checkpoint)
    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise CliError(f"{out}: the output must be an .onnx file")
    try:
        from semirest.core.train.export import export_checkpoint

        wrote, detector = export_checkpoint(ckpt, out)
    except CheckpointError as exc:
        raise CliError(str(exc)) from None
    except ModuleNotFoundError as exc:
        if exc.name != "onnx":
            raise
        raise CliError("export-model needs the onnx package, which is not installed (pip install onnx)") from None
    except ValueError as exc:
        raise CliError(f"{ckpt}: {exc}") from None
    if detector.calibration is None:
        print("note: this checkpoint has no calibration (trained before calibration existed): the file's "
              "threshold is 0.5 on the raw score and normalised_score equals score", file=sys.stderr)
    thr = f"threshold {detector.calibration.threshold:.4g}" if detector.calibration else "uncalibrated"
    h, w = detector.extractor.input_size
    print(f"wrote {wrote} ({wrote.stat().st_size / 1e6:.1f} MB; input N x 3 x {h} x {w}; {thr})", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("export-model", help="export a trained model as one ONNX detector file (runs without torch)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder of `semirest train` (holds model.safetensors)")
    src.add_argument("--checkpoint", help="a model .safetensors file")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.set_defaults(func=cmd_export_model)
