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
    suffix = {"onnx": ".onnx", "openvino": ".xml"}[args.format]
    if out.suffix.lower() != suffix:
        raise CliError(f"{out}: the output of --format {args.format} must be an {suffix} file")
    if args.format == "openvino":
        from semirest.core.deploy import DetectorError, import_openvino

        try:
            import_openvino()
        except DetectorError as exc:
            raise CliError(str(exc)) from None
    try:
        from semirest.core.train.export import export_checkpoint

        wrote, detector = export_checkpoint(ckpt, out, args.format)
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
    size = wrote.stat().st_size + (wrote.with_suffix(".bin").stat().st_size if args.format == "openvino" else 0)
    print(f"wrote {wrote} ({size / 1e6:.1f} MB; input N x 3 x {h} x {w}; {thr})", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("export-model", help="export a trained model as one ONNX (or OpenVINO IR) detector file (runs without torch)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder of `semirest train` (holds model.safetensors)")
    src.add_argument("--checkpoint", help="a model .safetensors file")
    p.add_argument("--out", required=True, help="the file to write: .onnx, or .xml (plus its .bin) for openvino")
    p.add_argument("--format", choices=("onnx", "openvino"), default="onnx",
                   help="onnx (default; onnxruntime) or openvino (OpenVINO IR; needs the openvino extra)")
    p.set_defaults(func=cmd_export_model)
