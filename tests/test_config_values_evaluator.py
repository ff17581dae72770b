"""The evaluator's own tIoU check (libs/evaluation/detection_map.py) for library callers that
bypass the config: thresholds in [0, 1] (0 and 1 stay legal for the loop reference), each once."""
from __future__ import annotations

import pytest

from libs.evaluation.detection_map import DetectionMAP

GT = {"database": {"a": {"subset": "validation", "duration": 10.0,
                         "annotations": [{"label": "Jump", "segment": [1.0, 3.0]}]}}}


@pytest.mark.parametrize("tious, what", [
    ([0.5, 0.5], "tiou_thresholds has 0.5 twice; give each threshold once"),
    ([-1.0, 0.5], "tiou_thresholds must lie in [0, 1], got -1.0"),
    ([0.5, 5.0], "tiou_thresholds must lie in [0, 1], got 5.0"),
])
def test_detection_map_refuses_bad_thresholds(tious, what):
    with pytest.raises(ValueError) as info:
        DetectionMAP(GT, "validation", tious)
    assert what in str(info.value)


def test_detection_map_takes_the_edges():
    assert list(DetectionMAP(GT, "validation", [0.0, 0.5, 1.0]).thresholds) == [0.0, 0.5, 1.0]
