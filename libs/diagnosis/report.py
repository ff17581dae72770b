"""One self-contained HTML page for a diagnosis: numbers, tables, figures embedded as base64
PNGs, per-class AP and the run's config. It opens offline: no script, no external file."""

from __future__ import annotations

import base64
import html
import json
from typing import Any, Mapping, Optional

import pandas as pd

from libs.diagnosis.false_positive import ERROR_TYPES

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { padding: 3px 9px; text-align: right; border-bottom: 1px solid #eee; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; margin: 0.6em 0; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
.note { color: #666; font-size: 0.9em; }
"""


def _table(df: pd.DataFrame, percent: bool = True, index: bool = True) -> str:
    fmt = (lambda v: f"{100 * v:.2f}") if percent else (lambda v: f"{v:.4f}")
    return df.to_html(float_format=fmt, na_rep="–", border=0, index=index, escape=True)


def _bucket_table(per_char: Mapping[str, Mapping[str, Optional[float]]]) -> str:
    rows = {name: {b: (v if v is not None else float("nan")) for b, v in buckets.items()}
            for name, buckets in per_char.items()}  # fmt: skip
    return _table(pd.DataFrame.from_dict(rows, orient="index"))


def _summary(d: dict) -> str:
    c, s = d["counts"], d["settings"]
    rows = [
        ("ground truth", html.escape(str(d["sources"].get("gt", "")))),
        ("results", html.escape(str(d["sources"].get("results", "")))),
        ("protocol", f"{html.escape(s['protocol'])}, split {html.escape(', '.join(s['split']))}, "
                     f"tIoU {', '.join(f'{t:.2f}' for t in d['tiou_thresholds'])}"),
        ("inputs", f"{c['ground_truth']} ground-truth instances ({c['ground_truth_dropped']} "
                   f"dropped as DETAD does), {c['classes']} classes, {c['predictions']} "
                   f"predictions; N = {c['average_num_instance_per_class']:.2f} instances/class"),
        ("average mAP", f"{100 * d['average_mAP']:.2f} %"),
        ("average-mAP<sub>N</sub>, all predictions", f"{100 * d['sensitivity']['base']:.2f} %"),
        ("average-mAP<sub>N</sub>, top-{0}G predictions".format(s["limit_factor"]),
         f"{100 * d['false_positive']['average_mAP_N']:.2f} %"),
    ]  # fmt: skip
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _figures(figures: Mapping[str, str]) -> str:
    parts = []
    for name, path in figures.items():
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        alt = html.escape(name.replace("_", " "))
        parts.append(f'<img alt="{alt}" src="data:image/png;base64,{data}">')
    return "\n".join(parts)


def _config(config: Any) -> str:
    if config is None:
        return '<p class="note">not known (give --config to record it)</p>'
    text = config if isinstance(config, str) else json.dumps(config, indent=2, default=str)
    return f"<pre>{html.escape(text)}</pre>"


def render_report(
    d: dict, figures: Optional[Mapping[str, str]] = None, config: Any = None
) -> str:
    """HTML text of the report of ``d`` (a ``diagnose`` result); ``figures``: {name: PNG path}."""
    fp = d["false_positive"]
    profile = pd.DataFrame.from_dict(
        {g: (p if p is not None else {k: float("nan") for k in ERROR_TYPES})
         for g, p in fp["profile"].items()}, orient="index")[ERROR_TYPES]  # fmt: skip
    gains = pd.DataFrame({"average-mAP_N gain (%)": fp["average_mAP_N_gain"]})
    per_class = pd.DataFrame(d["per_class"]).rename(
        columns={"num_gt": "#GT", "num_predictions": "#predictions", "AP_N": "AP_N (%)",
                 "AP": "AP (%)"}
    )  # fmt: skip
    per_class_html = per_class.to_html(
        border=0, index=False, na_rep="–",
        formatters={"AP_N (%)": lambda v: f"{100 * v:.2f}", "AP (%)": lambda v: f"{100 * v:.2f}"},
    )  # fmt: skip
    sections = [
        "<h1>Detector diagnosis (DETAD)</h1>",
        _summary(d),
        "<h2>False positives</h2>",
        '<p class="note">Error breakdown (%) of the top-kG predictions: for each class, its '
        "predictions of score rank (k-1)N<sub>c</sub> .. kN<sub>c</sub>-1; N<sub>c</sub> = its "
        "ground-truth count. Empty groups: –.</p>",
        _table(profile),
        _table(gains),
        "<h2>False negatives</h2>",
        '<p class="note">Fraction (%) of the ground truth of each bucket that no prediction '
        "detects (predictions below normalised precision 0.05 discarded).</p>",
        _bucket_table(d["false_negative"]),
        "<h2>Sensitivity</h2>",
        f'<p class="note">Average-mAP<sub>N</sub> (%) on the ground truth of each bucket; '
        f"overall {100 * d['sensitivity']['base']:.2f}.</p>",
        _bucket_table({k: v for k, v in d["sensitivity"].items() if k != "base"}),
        "<h2>Figures</h2>",
        _figures(figures) if figures else '<p class="note">not drawn (--no-figures)</p>',
        "<h2>Per-class AP</h2>",
        '<p class="note">Mean over the tIoU thresholds; AP as the evaluator computes it, '
        "AP<sub>N</sub> with DETAD's normalised precision, on all predictions.</p>",
        per_class_html,
        "<h2>Config</h2>",
        _config(config),
    ]
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Diagnosis</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
