"""Label assignment: hand-made cases and the vectorised version against a per-point loop."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.modeling.assigner import label_points, label_points_single_video


def make_points(buffer_len, ranges):
    """Rows [t, reg_min, reg_max, stride] of all levels (stride 2^l), concatenated."""
    rows = []
    for level, (lo, hi) in enumerate(ranges):
        s = 2**level
        rows += [[float(t), lo, hi, float(s)] for t in range(0, buffer_len, s)]
    return torch.tensor(rows)


def slow_label_points(points, segments, labels, num_classes, center_sample="radius", radius=1.5):
    """One point and one GT at a time, straight from the written rules (spec §6.1)."""
    P = len(points)
    cls_t, reg_t = torch.zeros(P, num_classes), torch.zeros(P, 2)
    for p in range(P):
        t, lo, hi, s = points[p].tolist()
        lengths = []
        for a, b in segments.tolist():
            left, right = t - a, b - t
            if center_sample == "radius":
                m = 0.5 * (a + b)
                inside = min(t - max(m - s * radius, a), min(m + s * radius, b) - t) > 0
            else:
                inside = min(left, right) > 0
            in_range = lo <= max(left, right) <= hi
            lengths.append(b - a if inside and in_range else math.inf)
        if not lengths or min(lengths) == math.inf:
            continue
        best = min(lengths)
        for k, length in enumerate(lengths):
            if length < math.inf and length <= best + 1e-3:
                cls_t[p, int(labels[k])] = 1.0
        k = lengths.index(best)
        a, b = segments[k].tolist()
        reg_t[p] = torch.tensor([(t - a) / s, (b - t) / s])
    return cls_t, reg_t


def positives(cls_t):
    return cls_t.sum(-1).nonzero()[:, 0].tolist()


def test_one_gt_centre_radius_points_are_positive():
    pts = make_points(32, [(0, 100)])
    cls_t, reg_t = label_points_single_video(
        pts, torch.tensor([[10.0, 20.0]]), torch.tensor([2]), 3
    )
    # centre 15 ± 1.5 · stride 1 → t ∈ (13.5, 16.5)
    assert positives(cls_t) == [14, 15, 16]
    assert torch.equal(cls_t[15], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(reg_t[[14, 15, 16]], torch.tensor([[4.0, 6.0], [5.0, 5.0], [6.0, 4.0]]))


def test_center_sample_none_uses_whole_segment():
    pts = make_points(32, [(0, 100)])
    cls_t, _ = label_points_single_video(
        pts, torch.tensor([[10.0, 20.0]]), torch.tensor([0]), 1, center_sample="none"
    )
    assert positives(cls_t) == list(range(11, 20))  # strict inside: the boundaries are not positive


def test_regression_range_picks_the_level():
    # level 0: t = 0..31; level 1: t = 0, 2, .., 30 at rows 32..47
    pts = make_points(32, [(0, 4), (4, 100)])
    cls_t, reg_t = label_points_single_video(
        pts, torch.tensor([[10.0, 20.0], [3.0, 6.0]]), torch.tensor([0, 1]), 2
    )
    # long GT: level-0 points have max distance 5-6 > 4; level-1 points t=14, 16 (radius 3) are
    # in range
    # short GT: level-0 points 4, 5 (max distance ≤ 4); at level 1, t=4 has max distance 2 < 4
    assert positives(cls_t) == [4, 5, 32 + 7, 32 + 8]
    assert torch.equal(reg_t[32 + 7], torch.tensor([2.0, 3.0]))  # (14 − 10, 20 − 14) / stride 2
    assert torch.equal(cls_t[4], torch.tensor([0.0, 1.0]))


def test_regression_range_is_inclusive_and_a_point_can_be_positive_on_two_levels():
    pts = make_points(32, [(0, 4), (4, 100)])
    cls_t, reg_t = label_points_single_video(
        pts, torch.tensor([[10.0, 18.0]]), torch.tensor([0]), 1
    )
    # t = 14 has max distance exactly 4 = reg_max of level 0 = reg_min of level 1; at level 1
    # (radius 3) t = 12, 16 are positive too (max distance 6)
    assert positives(cls_t) == [14, 32 + 6, 32 + 7, 32 + 8]
    assert torch.equal(reg_t[14], torch.tensor([4.0, 4.0])) and torch.equal(
        reg_t[32 + 7], torch.tensor([2.0, 2.0])
    )


def test_overlapping_gts_shortest_wins():
    pts = make_points(32, [(0, 100)])
    segs = torch.tensor([[0.0, 30.0], [10.0, 20.0]])
    cls_t, reg_t = label_points_single_video(
        pts, segs, torch.tensor([0, 1]), 2, center_sample="none"
    )
    assert torch.equal(cls_t[15], torch.tensor([0.0, 1.0])) and torch.equal(
        reg_t[15], torch.tensor([5.0, 5.0])
    )
    assert torch.equal(cls_t[5], torch.tensor([1.0, 0.0])) and torch.equal(
        reg_t[5], torch.tensor([5.0, 25.0])
    )


def test_near_equal_lengths_give_multi_label_targets():
    pts = make_points(32, [(0, 100)])
    # within 1e-3, plus an exact duplicate
    segs = torch.tensor([[10.0, 20.0], [10.0005, 20.0], [10.0, 20.0]])
    cls_t, reg_t = label_points_single_video(pts, segs, torch.tensor([0, 1, 0]), 3)
    assert torch.equal(cls_t[15], torch.tensor([1.0, 1.0, 0.0]))  # duplicates clamp at 1
    # regress to the shortest
    torch.testing.assert_close(reg_t[15], torch.tensor([15 - 10.0005, 5.0]))


def test_zero_gt_gives_background():
    pts = make_points(16, [(0, 4), (4, 100)])
    cls_t, reg_t = label_points_single_video(
        pts, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 4
    )
    assert cls_t.shape == (24, 4) and reg_t.shape == (24, 2)
    assert not cls_t.any() and not reg_t.any()


def test_batch_with_none_and_empty_gt():
    pts = [make_points(16, [(0, 4)]), make_points(16, [(0, 4), (4, 100)])[16:]]
    segs = [torch.tensor([[2.0, 6.0]]), None, torch.zeros(0, 2)]
    labels = [torch.tensor([1]), None, torch.zeros(0, dtype=torch.long)]
    gt_cls, gt_off = label_points(pts, segs, labels, 2)
    assert gt_cls.shape == (3, 24, 2) and gt_off.shape == (3, 24, 2)
    assert gt_cls[0].any() and not gt_cls[1:].any()


# endpoints on a 1/8 grid are exact in float32 and float64, so boundary ties (strict '>' of the
# centre region, inclusive range ends) are decided identically by both versions; the optional
# 0.0005 start jitter creates near-equal lengths that must share a point (1e-3 tolerance)
GT = st.tuples(
    st.integers(-32, 480), st.integers(1, 320), st.sampled_from([0.0, 0.0005]), st.integers(0, 3)
)


@settings(max_examples=60, deadline=None)
@given(gts=st.lists(GT, min_size=1, max_size=6), center_sample=st.sampled_from(["radius", "none"]))
def test_vectorised_matches_loop(gts, center_sample):
    # float64 on both sides: with the jitter, two lengths can be equal in exact arithmetic and
    # differ only by float32 rounding, which would make "the first shortest GT" ambiguous
    pts = make_points(64, [(0, 4), (4, 8), (8, 16), (16, 10000)]).double()
    segs = torch.tensor([[i / 8 + jitter, (i + d) / 8] for i, d, jitter, _ in gts], dtype=torch.float64)
    labels = torch.tensor([c for *_, c in gts])
    cls_fast, reg_fast = label_points_single_video(pts, segs, labels, 4, center_sample)
    cls_slow, reg_slow = slow_label_points(pts, segs, labels, 4, center_sample)
    assert torch.equal(cls_fast.float(), cls_slow)
    pos = cls_slow.sum(-1) > 0
    torch.testing.assert_close(reg_fast[pos].float(), reg_slow[pos])
    assert (reg_fast[pos] >= 0).all()


def test_bad_center_sample_raises():
    with pytest.raises(ValueError, match="center_sample"):
        label_points_single_video(
            make_points(8, [(0, 4)]), torch.tensor([[1.0, 3.0]]), torch.tensor([0]), 1, "box"
        )
