"""`semirest project create|export|import|info`: the studio's projects without a window."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from semirest.core.cli.common import CliError, TqdmProgress
from semirest.core.config import ConfigError
from semirest.core.data.datasets import DatasetLayoutError
from semirest.core.data.images import ImageReadError
from semirest.core.labels.image_labels import BLOCK8, BLOCK16, PIXEL
from semirest.core.project import formats
from semirest.core.project.formats import FORMATS, IMPORT_FORMATS
from semirest.core.project.store import ProjectError, ProjectStore


def _cli_error(exc: Exception) -> CliError:
    return CliError(str(exc))


def _create(args) -> int:
    try:
        if Path(args.project).exists():
            raise ProjectError(f"{Path(args.project).absolute()}: already exists; open it, or choose another file name")
        if args.images:
            new = formats.images_from_folder(args.images, recursive=not args.no_recursive)
            source = f"folder {Path(args.images).absolute()}"
        else:
            if not args.category:
                raise ProjectError("--mvtec needs --category (e.g. --category screw)")
            new = formats.images_from_mvtec(args.mvtec, args.category, split=args.split, reference=not args.no_reference)
            source = f"mvtec {Path(args.mvtec).absolute()} category {args.category} split {args.split}"
        checked = formats.check_new_images(new)
        for note in checked.notes:
            print(f"note: {note}", file=sys.stderr)
        if checked.refused:
            print(f"refused {len(checked.refused)} of {len(new)} files:", file=sys.stderr)
            for r in checked.refused:
                print(f"  {r}", file=sys.stderr)
        if not checked.usable:
            raise ProjectError(f"none of the {len(new)} image files could be used; no project was created")
        def fill(store):
            store.set_meta("source", source)
            ids = store.add_images(checked.usable)
            for n, image_id in zip(checked.usable, ids):
                store.set_image_size(image_id, *checked.sizes[n.key])

        ProjectStore.create_complete(args.project, fill)  # a killed create leaves nothing in the way
        n_ref = sum(1 for n in checked.usable if n.reference_mask_path is not None)
    except (ProjectError, DatasetLayoutError, ImageReadError, OSError) as exc:
        raise _cli_error(exc) from None
    print(f"created {args.project}: {len(checked.usable)} images, {n_ref} reference masks"
          + (f"; {len(checked.refused)} files refused (listed above)" if checked.refused else ""))
    return 1 if checked.refused else 0


def _export(args) -> int:
    try:
        bench = formats.load_benchmark(args.benchmark) if args.benchmark else None
        with ProjectStore.open(args.project) as store:
            types = tuple(t.strip() for t in args.types.split(",")) if args.types else formats.LABEL_TYPES
            unknown = [t for t in types if t not in formats.LABEL_TYPES]
            if unknown:
                raise ProjectError(f"unknown label types {unknown}; expected some of {', '.join(formats.LABEL_TYPES)}")
            paths = formats.export(store, args.format, args.out, benchmark=bench, label_types=types,
                                   overwrite=args.overwrite, images=args.images)
    except (ProjectError, ImageReadError, OSError) as exc:
        raise _cli_error(exc) from None
    print(f"exported {args.format} to {args.out}: {len(paths)} files")
    return 0


def _import(args) -> int:
    try:
        with ProjectStore.open(args.project, require_write=True) as store:
            report = formats.import_labels(store, args.format, args.source, as_type=args.as_type, replace=args.replace)
    except (ProjectError, ImageReadError, OSError) as exc:
        raise _cli_error(exc) from None
    print(f"imported {args.format} labels ({'replace' if args.replace else 'merge'}) from {args.source}: {report}")
    return 0


def _copy(args) -> int:
    from semirest.core.project.store import ProjectError, ProjectStore

    try:
        with ProjectStore.open(args.project, read_only=True) as store:  # also while the studio writes it
            dst = store.save_copy(args.dst)
            n = len(store.images())
    except ProjectError as exc:
        raise _cli_error(exc) from None
    print(f"copied {args.project} to {dst}: one self-contained file ({n} images, every saved edit)")
    return 0


def _info(args) -> int:
    try:
        with ProjectStore.open(args.project) as store:  # upgrades an older schema (adds the runs table)
            imgs = store.images()
            sums = store.summaries()
            labelled = sum(1 for s in sums.values() if s.is_labelled)
            seconds = sum(s.seconds for s in sums.values())
            print(f"{store.path}: schema {store.schema_version()}, {len(imgs)} images, {labelled} labelled, {seconds:.1f} s of labeling")
            if store.read_only:
                print(f"note: {store.read_only_reason}")
    except ProjectError as exc:
        raise _cli_error(exc) from None
    return 0


def format_metrics(metrics: dict) -> str:
    """'pixel_auroc 0.912 pro 0.701 ap 0.154' from a run's metrics (only the evaluation figures)."""
    keys = ("pixel_auroc", "pro", "ap", "image_auroc")
    parts = [f"{k} {metrics[k]:.3f}" for k in keys if isinstance(metrics.get(k), (int, float)) and metrics[k] == metrics[k]]
    if "final_loss" in metrics and metrics["final_loss"] is not None:
        parts.append(f"loss {metrics['final_loss']:.4f}")
    if metrics.get("eval_images"):
        parts.append(f"on {metrics['eval_images']} images")
    return " ".join(parts) or "-"


def _runs(args) -> int:
    try:
        with ProjectStore.open(args.project) as store:  # upgrades an older schema (adds the runs table)
            rows = store.runs()
    except ProjectError as exc:
        raise _cli_error(exc) from None
    if args.json:
        print(json.dumps([{k: getattr(r, k) for k in ("id", "setting", "preset", "state", "duration_s", "metrics",
                                                        "checkpoint", "started_at", "finished_at", "message")} for r in rows], indent=2))
        return 0
    if not rows:
        print("no training runs yet")
        return 0
    print(f"{'id':>3}  {'setting':<7} {'preset':<6} {'state':<9} {'duration':>9}  metrics")
    for r in rows:
        dur = f"{r.duration_s:.1f} s" if r.duration_s is not None else "-"
        print(f"{r.id:>3}  {r.setting:<7} {r.preset:<6} {r.state:<9} {dur:>9}  {format_metrics(r.metrics)}")
    return 0


def _train(args) -> int:
    """The studio's Train button without a window: the setting follows from the labels."""
    from semirest.core.project.run import train_project  # PyTorch: loaded when the command runs, so `semirest project` starts without it

    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    progress = TqdmProgress(enabled=not args.quiet)
    choices = {"preset": args.preset, "device": args.device, "steps": args.steps or 0}

    def said(run_id, plan):
        print(f"run {run_id}: {plan.setting}. {plan.explanation}", file=sys.stderr)

    def trained(run_id, res):
        progress.close()
        print(f"run {run_id} trained in {res.duration_s:.1f} s (model stored); scoring the held-out and labelled images",
              file=sys.stderr)

    try:
        run_id, res = train_project(args.project, args.preset, args.device, overrides, choices, on_run=said,
                                    on_trained=trained, progress=progress)
    except (ProjectError, ConfigError, ValueError, RuntimeError) as exc:
        raise _cli_error(exc) from None
    finally:
        progress.close()
    held_out = "held-out metrics " if res.scoring == "done" else ""
    print(f"run {run_id} {res.state} in {res.duration_s:.1f} s: {held_out}{format_metrics(res.metrics)}"
          + (f" ({res.message})" if res.message else ""))
    return 0 if res.state == "finished" else 1


def register(sub) -> None:
    p = sub.add_parser("project", help="create, export and inspect labeling projects")
    p.set_defaults(func=lambda args: p.print_help())
    ps = p.add_subparsers(dest="project_command", metavar="ACTION")

    c = ps.add_parser("create", help="create a project file from an image folder or an MVTec category")
    c.add_argument("project", help="the project file to create (e.g. screw.sqlite)")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", help="a folder of images (searched recursively)")
    src.add_argument("--mvtec", metavar="ROOT", help="an MVTec-layout dataset root")
    c.add_argument("--category", help="the MVTec category (with --mvtec)")
    c.add_argument("--split", choices=("test", "train", "all"), default="test", help="MVTec split to import (default: test)")
    c.add_argument("--no-reference", action="store_true", help="do not bring MVTec ground-truth masks in as reference masks")
    c.add_argument("--no-recursive", action="store_true", help="with --images: only the folder itself")
    c.set_defaults(func=_create)

    e = ps.add_parser("export", help="export labels or timing")
    e.add_argument("project")
    e.add_argument("--format", required=True, choices=FORMATS)
    e.add_argument("--out", required=True, metavar="DIR")
    e.add_argument("--benchmark", metavar="JSON", help="timing-csv: results per label type for the accuracy-vs-time chart")
    e.add_argument("--types", metavar="LIST", help="masks: label types to include, comma-separated "
                                                    "(pixel,block8,block16,box; default all)")
    e.add_argument("--overwrite", action="store_true", help="write into a folder that is not empty, replacing the "
                                                           "files of an earlier export")
    e.add_argument("--images", choices=formats.IMAGE_MODES, default="none",
                   help=f"{', '.join(formats.IMAGE_FORMATS)}: link or copy the labelled images into the export "
                        "beside their label files, so YOLO or DOTA tools take the folder as it is (default: none)")
    e.set_defaults(func=_export)

    i = ps.add_parser("import", help="import labels exported earlier (or by another tool)")
    i.add_argument("project")
    i.add_argument("--format", required=True, choices=IMPORT_FORMATS)
    i.add_argument("--from", dest="source", required=True, metavar="DIR")
    i.add_argument("--as", dest="as_type", choices=(PIXEL, BLOCK8, BLOCK16), default=PIXEL, help="masks: label type to create")
    i.add_argument("--replace", action="store_true", help="an updated file: the images it names get exactly its labels "
                                                         "of the types it carries (default: add to what is there; "
                                                         "importing the same file twice changes nothing)")
    i.set_defaults(func=_import)

    k = ps.add_parser("copy", help="save a self-contained copy of a project (also while the studio has it open)")
    k.add_argument("project")
    k.add_argument("dst", help="the new project file")
    k.set_defaults(func=_copy)

    n = ps.add_parser("info", help="print a project's size and progress")
    n.add_argument("project")
    n.set_defaults(func=_info)

    t = ps.add_parser("train", help="train on a project's labels, as the studio's Train button (stored as a run)")
    t.add_argument("project")
    t.add_argument("--preset", default="fast", help="fast (default) or paper")
    t.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    t.add_argument("--steps", type=int, default=None, help="steps of the last stage (default: the preset's)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_train)

    r = ps.add_parser("runs", help="list the training runs stored in a project")
    r.add_argument("project")
    r.add_argument("--json", action="store_true", help="print the runs as JSON")
    r.set_defaults(func=_runs)
