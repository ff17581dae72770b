"""Evaluate a checkpoint (ours or a published ActionFormer / video-mamba-suite `.pth.tar`).

    python eval.py CONFIG CKPT [--opts key=value ...] [--out RESULTS.json] [--json METRICS.json]
                               [--per-class] [--device cpu|cuda] [--save-raw RAW.pt] [--diagnose DIR]

The model is built from CONFIG (plus overrides) and loaded with the checkpoint's EMA weights.
CKPT may also be a run folder (its last.pth is used). By default the detections go to
`<ckpt dir>/results_eval.json` and the metrics to `<ckpt dir>/metrics_eval.json`; an existing file
there is never replaced (a suffix `_1`, `_2`, ... is added). `--save-raw RAW.pt` also keeps the
pre-NMS candidates, so `tools/rescore.py RAW.pt CONFIG --opts test.nms_sigma=...` can re-tune the
post-processing without the model (libs/inference/raw.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from libs.cli import (
    add_config_tiou_arg, add_deprecated_alias, add_device_arg, add_opts_arg, add_threads_arg,
    config_inputs, load_detector_and_config, opts_with_tiou, pick_device, run_cli,
)
from libs.core.config import load_config
from libs.datasets import build_dataset, build_loader
from libs.engine.checkpoint import resolve_checkpoint
from libs.engine.run_folder import CONFIG_NAME, MARKER_NAME
from libs.engine.run_lock import LOCK_NAME
from libs.evaluation import format_table
from libs.inference import evaluate
from libs.utils.io import unique_path
from libs.utils.logging import setup_logging
from libs.utils.paths import check_outputs, check_outside
from libs.utils.seeding import fix_random_seed
from libs.utils.threads import setup_threads

logger = logging.getLogger("eval")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate a checkpoint's EMA weights on the config's val split."
    )
    parser.add_argument("config", help="YAML config file the checkpoint was trained with")
    parser.add_argument("ckpt", help="checkpoint (.pth / published .pth.tar) or a run folder")
    add_opts_arg(parser, "test.nms_sigma=0.75 dataset.feat_folder=...")
    parser.add_argument("--out", dest="results", default=None,
                        help="detections JSON (default: <ckpt dir>/results_eval.json)")
    parser.add_argument("--json", dest="metrics", default=None,
                        help="metrics JSON (default: <ckpt dir>/metrics_eval.json)")
    parser.add_argument("--per-class", action="store_true", help="also print AP per class")
    add_config_tiou_arg(parser)
    add_deprecated_alias(parser, "--results", "--out")
    add_deprecated_alias(parser, "--metrics", "--json")
    add_device_arg(parser)
    add_threads_arg(parser)
    parser.add_argument(
        "--save-raw",
        default=None,
        metavar="RAW.pt",
        help="also save the pre-NMS candidates here, for tools/rescore.py",
    )
    parser.add_argument(
        "--diagnose",
        default=None,
        metavar="DIR",
        help="also write DETAD's error diagnosis (diagnosis.json, PNGs, report.html) to DIR",
    )
    parser.add_argument(
        "--allow-unsafe-checkpoint",
        action="store_true",
        help="load a checkpoint that pickles objects other than tensors (runs code from the "
        "file: only for files you trust; ours and the published .pth.tar never need it)",
    )
    return parser


# the files of a run folder the project needs: eval.py never writes over them (issue 15)
RUN_FILES = (CONFIG_NAME, "log.txt", "val_history.jsonl", MARKER_NAME, LOCK_NAME)
def read_paths(cfg, config: str, ckpt: Path) -> list[tuple[str, Optional[Path]]]:
    """What eval.py reads, and the checkpoint's run-folder files: no output may be one of them."""
    inputs = [("CKPT", ckpt), *config_inputs(cfg, config)]
    run_files = [ckpt.parent / name for name in RUN_FILES] + sorted(ckpt.parent.glob("*.pth"))
    inputs += [(f"run file {p.name} of the checkpoint's folder", p) for p in run_files]
    return inputs


def check_eval_outputs(cfg, args: argparse.Namespace) -> None:
    """Refuse outputs that are inputs (ground truth, features, checkpoint, run files) or each other."""
    outputs = [("--out", args.results), ("--json", args.metrics), ("--save-raw", args.save_raw)]
    ckpt = resolve_checkpoint(args.ckpt)
    inputs = read_paths(cfg, args.config, ckpt)
    check_outputs(inputs, outputs)
    if args.diagnose:  # written after the evaluation: checked now, before --out is written
        from libs.diagnosis.api import check_diagnosis_dir

        check_diagnosis_dir(args.diagnose, "--diagnose", inputs, others=outputs)
        outputs.append(("--diagnose", args.diagnose))
    check_outside(outputs, cfg.dataset.feat_folder, "feature folder (dataset.feat_folder)")
    folder = ckpt.parent.resolve()
    for flag, path in outputs:  # a new *.pth there would later be taken for a checkpoint
        if path and path.endswith((".pth", ".pth.tar")) and Path(path).parent.resolve() == folder:
            raise ValueError(f"{flag} {path} is named like a checkpoint in the checkpoint's folder "
                             f"{ckpt.parent}: it would be taken for one; choose another output path")


def output_path(requested: Optional[str], default: Path) -> Path:
    """An explicit path is used as given (a replaced file is logged); a default never replaces."""
    if requested is None:
        return unique_path(default)
    path = Path(requested)
    if path.exists():
        logger.warning("replacing existing %s", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def run(args: argparse.Namespace) -> int:
    args.opts = opts_with_tiou(args.opts, args.tiou)
    cfg = load_config(args.config, args.opts)
    device = pick_device(args.device)
    setup_logging()
    setup_threads(args.threads, cfg.threads)  # before any parallel work
    fix_random_seed(cfg.seed)
    check_eval_outputs(cfg, args)  # before any load or write
    # geometry keys (model.*, feat_stride, ...) from the checkpoint's stored config
    cfg, model, ckpt, meta = load_detector_and_config(
        cfg, args.ckpt, device, args.opts, args.allow_unsafe_checkpoint
    )
    logger.info(
        "evaluating %s weights of %s (%s format, epoch %s) on %s",
        meta["weights"],
        ckpt,
        meta["format"],
        meta.get("epoch", "?"),
        device,
    )
    val_set = build_dataset(cfg.dataset, "val", is_training=False)
    val_loader = build_loader(
        val_set,
        batch_size=1,
        num_workers=cfg.loader.num_workers,
        is_training=False,
        max_seq_len=cfg.dataset.max_seq_len,
        size_divisor=model.size_divisor,
    )
    results_path = output_path(args.results, ckpt.parent / "results_eval.json")
    metrics_path = output_path(args.metrics, ckpt.parent / "metrics_eval.json")
    raw_path = output_path(args.save_raw, Path(args.save_raw)) if args.save_raw else None
    result = evaluate(
        model,
        val_loader,
        cfg,
        id_to_name=val_set.id_to_name,
        results_path=results_path,
        metrics_path=metrics_path,
        raw_path=raw_path,
        device=device,
    )
    print(format_table(result, per_class=args.per_class))
    print(f"results: {results_path}\nmetrics: {metrics_path}")
    if raw_path is not None:
        print(f"raw predictions: {raw_path}")
    if args.diagnose:  # after evaluate(), which always writes results_path
        from libs.diagnosis.from_run import run_diagnosis_for_config

        run_diagnosis_for_config(cfg, results_path, args.diagnose)
        print(f"diagnosis: {Path(args.diagnose) / 'report.html'}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
