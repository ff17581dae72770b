"""Generate DETAD reference outputs for tests/test_diagnosis_detad.py (and the diagnose benchmark).

This script runs the published DETAD code (github.com/HumamAlwassel/DETAD, commit
24f7d9509214d08989efaa0276b91e85fb9591cb, ``src/``) and writes its numbers in the layout of our
``diagnosis.json``. DETAD needs its own environment (``np.float``/``np.int``, joblib)::

    git clone https://github.com/HumamAlwassel/DETAD /tmp/detad && git -C /tmp/detad checkout 24f7d95
    python3 -m venv /tmp/detad_venv
    /tmp/detad_venv/bin/pip install numpy==1.23.5 pandas==1.5.3 matplotlib==3.7.5 joblib==1.3.2
    /tmp/detad_venv/bin/python tests/data/detad/make_reference.py generate \
        --detad-src /tmp/detad/src --cases thumos_gen anet_gen

The tie case must be generated with the numpy the tests run with (numpy's sorts order ties
differently across versions and CPUs); numpy 2 needs a scratch copy of DETAD's src/ with
``np.float`` -> ``float``, ``np.int`` -> ``int``, ``np.infty`` -> ``np.inf`` (nothing else)::

    cp -r /tmp/detad/src /tmp/detad_np2 && sed -i 's/np\.float)/float)/g; s/np\.int)/int)/g; \
        s/np\.infty/np.inf/g' /tmp/detad_np2/*.py
    python3 -m venv /tmp/detad_venv2
    /tmp/detad_venv2/bin/pip install numpy==2.4.6 pandas==2.2.3 joblib==1.3.2 matplotlib
    /tmp/detad_venv2/bin/python tests/data/detad/make_reference.py generate \
        --detad-src /tmp/detad_np2 --cases thumos_ties

``generate`` writes the generated cases (``<case>_gt.json``, ``<case>_results.json``,
``<case>_expected.json``) next to this file. ``run GT RESULTS`` runs DETAD on any pair of files
and prints/writes its numbers (used by ``tools/benchmark.py diagnose --detad-python ...``).

Only DETAD's analysis functions are called; nothing is plotted (its plots need LaTeX). DETAD
needs the characteristic fields in every annotation: when they are missing, ``run`` adds them
with the definitions of ``libs/diagnosis/characteristics.py`` (length = end - start, coverage =
length / video duration, num-instances = annotations in the video), and a ``taxonomy`` key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DETAD_COMMIT = "24f7d9509214d08989efaa0276b91e85fb9591cb"
ERRORS = ["True Positive", "Double Detection Err", "Wrong Label Err", "Localization Err",
          "Confusion Err", "Background Err"]
THUMOS_BINS = {"coverage": (np.array([0, 0.02, 0.04, 0.06, 0.08, 1]), ["XS", "S", "M", "L", "XL"]),
               "length": (np.array([0, 3, 6, 12, 18, np.inf]), ["XS", "S", "M", "L", "XL"]),
               "num-instances": (np.array([-1, 1, 40, 80, np.inf]), ["XS", "S", "M", "L"])}
ANET_BINS = {"coverage": (np.linspace(0, 1.0, 6), ["XS", "S", "M", "L", "XL"]),
             "length": (np.array([0, 30, 60, 120, 180, np.inf]), ["XS", "S", "M", "L", "XL"]),
             "num-instances": (np.array([-1, 1, 4, 8, np.inf]), ["XS", "S", "M", "L"])}


# ----------------------------------------------------------------------------- running DETAD
def _none_if_nan(x):
    return None if x is None or not np.isfinite(x) else float(x)


def _diagnosis(gt, res, subset, tious, bins, limit, thr):
    from action_detector_diagnosis import ActionDetectorDiagnosis

    d = ActionDetectorDiagnosis(ground_truth_filename=gt, prediction_filename=res,
                                tiou_thresholds=tious, limit_factor=limit, min_tiou_thr=0.1,
                                subset=subset, verbose=False, load_extra_annotations=True,
                                characteristic_names_to_bins=bins, normalize_ap=True,
                                minimum_normalized_precision_threshold_for_detection=thr)
    d.evaluate()
    return d


def run_detad(gt: str, res: str, subset: str, protocol: str) -> dict:
    """DETAD's three analyses exactly as its scripts' main() set them up; numbers only."""
    import false_negative_analysis as fna
    import false_positive_analysis as fpa
    import sensitivity_analysis as sa

    bins = THUMOS_BINS if protocol == "thumos14" else ANET_BINS
    tious = [0.5] if protocol == "thumos14" else np.linspace(0.5, 0.95, 10)
    t0 = time.perf_counter()
    fp = _diagnosis(gt, res, subset, tious, bins, 10, 0.0)
    fp.diagnose()
    _, _, pct = fpa.split_predictions_by_score_ranges(fp, fp.limit_factor)
    profile = {f"{g + 1}G": {k: _none_if_nan(df["avg"][k]) for k in ERRORS}
               for g, df in pct.items()}
    fn = _diagnosis(gt, res, subset, tious, bins, None, 0.05)
    false_negative = {}
    for name in bins:
        avg = fna.fn_distribution_by_characteristic(fn, name)["avg"]["unmatched"]
        false_negative[name] = {str(k): float(v) for k, v in avg.items()}
    sens = _diagnosis(gt, res, subset, tious, bins, None, 0.0)
    sensitivity = {"base": float(sens.average_mAP)}
    for name in bins:
        by_bucket = sa.compute_average_mAP_N_for_characteristic(sens, name)
        sensitivity[name] = {str(k): _none_if_nan(v) for k, v in by_bucket.items()}
    seconds = time.perf_counter() - t0
    return {
        "tiou_thresholds": [float(t) for t in tious],
        "false_positive": {
            "average_mAP_N": float(fp.average_mAP),
            "profile": profile,
            "average_mAP_N_gain": {k: float(v) for k, v in fp.average_mAP_gain.items()},
        },
        "false_negative": false_negative,
        "sensitivity": sensitivity,
        "detad": {"commit": DETAD_COMMIT, "seconds": seconds, "subset": subset,
                  "protocol": protocol, "numpy": np.__version__,
                  "pandas": __import__("pandas").__version__},
    }


def augment_for_detad(gt_path: str, out_path: str) -> None:
    """Copy of the GT with DETAD's required keys (taxonomy, characteristic fields) added."""
    with open(gt_path) as f:
        data = json.load(f)
    data.setdefault("taxonomy", [])
    data.setdefault("version", "")
    for video in data["database"].values():
        anns = video.get("annotations", [])
        for a in anns:
            length = a["segment"][1] - a["segment"][0]
            a.setdefault("length", length)
            a.setdefault("coverage", length / video["duration"])
            a.setdefault("num-instances", len(anns))
    with open(out_path, "w") as f:
        json.dump(data, f)


# ----------------------------------------------------------------------------- generated cases
def _video_gt(rng, duration, n_inst, classes, cover_dur, long_segments):
    """One video's annotations: n_inst segments of 1-2 classes, characteristic fields added.
    Lengths are log-uniform in [0.5 s, 0.6 duration], or uniform in [0.02, 0.98] duration."""
    labels = rng.choice(classes, size=min(2, len(classes)), replace=False)
    anns = []
    for _ in range(n_inst):
        if long_segments:
            length = float(rng.uniform(0.02, 0.98) * duration)
        else:
            length = float(np.exp(rng.uniform(np.log(0.5), np.log(0.6 * duration))))
        start = float(rng.uniform(0, duration - length))
        anns.append({"label": str(rng.choice(labels)),
                     "segment": [round(start, 2), round(start + length, 2)]})
    for a in anns:
        a["length"] = a["segment"][1] - a["segment"][0]
        a["coverage"] = a["length"] / cover_dur
        a["num-instances"] = len(anns)
    return anns


def make_gt(rng, n_videos, classes, counts, dur_range, subset, cover_scale, long_segments):
    """GT database; `counts` lists instance counts to cycle through (covers the #inst bins)."""
    db = {}
    for i in range(n_videos):
        duration = round(float(rng.uniform(*dur_range)), 2)
        vid = f"video_{i:04d}"
        anns = _video_gt(rng, duration, counts[i % len(counts)], classes,
                         duration * cover_scale, long_segments)
        db[vid] = {"subset": subset, "duration": duration, "annotations": anns}
    return {"version": "gen", "taxonomy": [], "database": db}


def _jitter(rng, seg, scale):
    s, e = seg
    length = e - s
    return [s + rng.normal(0, scale * length), e + rng.normal(0, scale * length)]


def make_results(rng, gt, classes, n_random, round_scores=None):
    """Predictions of every error kind: near-GT (right or wrong class, tight or loose), and
    random segments. Every prediction is on a GT video (see README: DETAD's fp analysis
    mislabels predictions of videos without GT)."""
    results = {}
    for vid, video in gt["database"].items():
        dur, preds = video["duration"], []
        for a in video["annotations"]:
            for kind in rng.choice(6, size=rng.integers(1, 5)):
                scale = [0.03, 0.03, 0.05, 0.4, 0.4, 0.1][kind]
                label = a["label"] if kind in (0, 1, 3) else str(rng.choice(classes))
                seg = _jitter(rng, a["segment"], scale)
                preds.append((label, seg, rng.beta(4, 2) if kind == 0 else rng.random()))
        for _ in range(n_random):
            s = rng.uniform(0, dur)
            preds.append((str(rng.choice(classes)), [s, s + rng.exponential(0.1 * dur)],
                          rng.random() * 0.6))
        entries = []
        for label, (s, e), score in preds:
            score = float(score) if round_scores is None else round(float(score), round_scores)
            entries.append({"label": label, "segment": [round(float(s), 3),
                                                        round(float(max(s, e)), 3)],
                            "score": score})
        results[vid] = entries
    return {"version": "gen", "results": results, "external_data": {}}


CASES = {
    # name: (protocol, subset, n_videos, classes, instance counts, durations, cover scale,
    #        long segments, random preds per video, score rounding)
    "thumos_gen": ("thumos14", "testing", 24, [f"C{i}" for i in range(6)],
                   [3, 1, 45, 6, 85, 2, 10], (60, 400), 1.0003, False, 8, None),
    "anet_gen": ("activitynet", "validation", 60, [f"A{i}" for i in range(8)],
                 [1, 2, 3, 5, 9, 1, 4], (20, 240), 1.0, True, 3, None),
    # scores on a 0.1 grid: DETAD's three sorts order ties differently, and so does numpy from
    # one version (and CPU) to another; see tie_probe().
    "thumos_ties": ("thumos14", "testing", 10, [f"T{i}" for i in range(3)],
                    [4, 1, 12, 2], (60, 200), 1.0, False, 5, 1),
}


def tie_probe() -> list:
    """How this numpy orders ties in the sorts DETAD uses (tests/test_diagnosis_detad.py
    computes the same probe and skips the tie case where it differs)."""
    s = np.array([0.5, 0.2, 0.5, 0.1, 0.5, 0.2, 0.9, 0.5] * 5)
    return [s.argsort()[::-1].tolist(), s[::-1].argsort(kind="quicksort").tolist()]


def _add_odd_annotations(gt):
    """DETAD drops GT with end <= start and coverage > 1: put one of each in the first video."""
    anns = next(iter(gt["database"].values()))["annotations"]
    zero = dict(anns[0], segment=[5.0, 5.0], length=0.0, coverage=0.0)
    wide = dict(anns[0], segment=[1.0, 9.0], length=8.0, coverage=1.25)
    anns.extend([zero, wide])


def generate(names) -> None:
    for name in names:
        protocol, subset, nv, classes, counts, durs, cscale, long_segs, nrand, rnd = CASES[name]
        rng = np.random.default_rng(sum(map(ord, name)))
        gt = make_gt(rng, nv, classes, counts, durs, subset, cscale, long_segs)
        if name == "thumos_gen":
            _add_odd_annotations(gt)
        res = make_results(rng, gt, classes, nrand, rnd)
        paths = {k: os.path.join(HERE, f"{name}_{k}.json") for k in ("gt", "results", "expected")}
        with open(paths["gt"], "w") as f:
            json.dump(gt, f)
        with open(paths["results"], "w") as f:
            json.dump(res, f)
        out = run_detad(paths["gt"], paths["results"], subset, protocol)
        out["detad"].pop("seconds")
        out["detad"]["tie_probe"] = tie_probe()
        with open(paths["expected"], "w") as f:
            json.dump(out, f, indent=1)
        n = sum(len(v) for v in res["results"].values())
        print(f"{name}: {n} predictions, base {out['sensitivity']['base']:.6f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["generate", "run"])
    p.add_argument("files", nargs="*", help="run: GT_JSON RESULTS_JSON")
    p.add_argument("--detad-src", required=True, help="DETAD's src/ folder")
    p.add_argument("--split", default="testing", help="run: DETAD subset (exact name)")
    p.add_argument("--protocol", default="thumos14", choices=["thumos14", "activitynet"])
    p.add_argument("--out", help="run: write the numbers here")
    p.add_argument("--cases", nargs="+", default=list(CASES), help="generate: which cases")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.detad_src))
    warnings.simplefilter("ignore")
    if args.mode == "generate":
        generate(args.cases)
        return 0
    gt, res = args.files
    with tempfile.TemporaryDirectory() as tmp:
        aug = os.path.join(tmp, "gt_detad.json")
        augment_for_detad(gt, aug)
        out = run_detad(aug, res, args.split, args.protocol)
    text = json.dumps(out, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
