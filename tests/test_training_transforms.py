"""The training-time transforms of `libs.datasets.transforms`: the random crop to max_seq_len
(`truncate_feats`, by hand with scripted windows and as properties), the clipping of segments to
the features (`clip_to_length`), and the per-worker seeding of the loader."""
import random

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.core.structures import VideoSample
from libs.datasets.transforms import clip_to_length, truncate_feats


def test_clip_to_length_rule():
    segments = torch.tensor([[0.0, 10.0], [15.0, 25.0], [18.0, 30.0], [20.0, 22.0], [25.0, 26.0]])
    kept, labels = clip_to_length(segments, torch.arange(5), vid_len=20.0, trunc_thresh=0.5)
    torch.testing.assert_close(kept, torch.tensor([[0.0, 10.0], [15.0, 20.0]]))  # 5/10 kept; 2/12 < 0.5
    assert labels.tolist() == [0, 1]
    assert clip_to_length(segments[3:], torch.arange(2), 20.0, 0.5) == (None, None)


def _crop_sample(num_feats: int, segments) -> VideoSample:
    segs = torch.tensor(segments, dtype=torch.float32).reshape(-1, 2)
    feats = torch.arange(num_feats, dtype=torch.float32)[None].repeat(3, 1)  # [3, T]: value = index
    return VideoSample("v", feats, segs, torch.arange(len(segs)), 30.0, 100.0, 4.0, 16.0)


class _FixedRng:
    """randint returning scripted values, to check one crop by hand."""

    def __init__(self, values):
        self.values = list(values)

    def randint(self, a, b):
        value = self.values.pop(0)
        assert a <= value <= b
        return value


def test_crop_by_hand():
    sample = _crop_sample(100, [[5, 15], [28, 40], [45, 50], [60, 70]])
    out = truncate_feats(sample, max_seq_len=20, trunc_thresh=0.5, rng=_FixedRng([30]))  # window [30, 50]
    assert out.feats.shape == (3, 20) and out.feats[0, 0] == 30
    # [28,40] keeps 10/12, [45,50] 5/5; [60,70] none; both clipped to the window and shifted
    torch.testing.assert_close(out.segments, torch.tensor([[0.0, 10.0], [15.0, 20.0]]))
    assert out.labels.tolist() == [1, 2]
    assert sample.feats.shape == (3, 100)  # the input is not modified


def test_crop_retries_until_a_segment_survives():
    sample = _crop_sample(100, [[80, 90]])
    out = truncate_feats(sample, max_seq_len=20, trunc_thresh=0.5, rng=_FixedRng([0, 10, 75]))
    assert out.feats[0, 0] == 75 and out.segments.tolist() == [[5.0, 15.0]]


def test_crop_without_success_uses_the_last_window():
    sample = _crop_sample(100, [[80, 90]])
    out = truncate_feats(sample, max_seq_len=20, trunc_thresh=0.5, max_num_trials=2, rng=_FixedRng([0, 10]))
    assert out.feats[0, 0] == 10 and out.segments.shape == (0, 2) and out.labels.shape == (0,)


def test_crop_short_video_with_and_without_crop_ratio():
    sample = _crop_sample(50, [[10, 20]])
    assert truncate_feats(sample, 64, 0.5) is sample  # fits and no crop_ratio: unchanged
    out = truncate_feats(sample, 64, 0.5, crop_ratio=(0.5, 0.5), rng=random.Random(0))
    assert out.num_feats == 25 and len(out.segments) == 1


@settings(max_examples=60, deadline=None)
@given(num_feats=st.integers(5, 300), max_seq_len=st.integers(4, 128), seed=st.integers(0, 10**6),
       raw=st.lists(st.tuples(st.floats(-3, 300), st.floats(0.5, 60)), min_size=1, max_size=8),
       thresh=st.sampled_from([0.3, 0.5, 0.9]))
def test_crop_properties(num_feats, max_seq_len, seed, raw, thresh):
    sample = _crop_sample(num_feats, [[s, s + d] for s, d in raw])
    random.seed(seed)
    out = truncate_feats(sample, max_seq_len, thresh, crop_ratio=(0.9, 1.0))
    if out is sample:
        return
    start, length = int(out.feats[0, 0]), out.num_feats
    if num_feats > max_seq_len:
        assert length == max_seq_len  # crop_ratio only applies to videos that fit
    else:
        assert max(round(0.9 * num_feats), 1) <= length < num_feats
    assert torch.equal(out.feats[0], torch.arange(start, start + length, dtype=torch.float32))
    assert (out.segments >= 0).all() and (out.segments <= length).all()
    for seg, label in zip(out.segments + start, out.labels):
        orig = sample.segments[label]
        assert torch.allclose(seg, orig.clamp(start, start + length))  # clipped strictly to the window
        assert (seg[1] - seg[0]) / (orig[1] - orig[0]) >= thresh - 1e-6


def test_worker_init_reset_seed_follows_torch_seed():
    from libs.datasets import worker_init_reset_seed

    torch.manual_seed(2**31 + 123)  # reduced modulo 2**31, as in the reference
    worker_init_reset_seed(0)
    assert random.random() == random.Random(123).random()
    assert np.random.rand() == np.random.RandomState(123).rand()
