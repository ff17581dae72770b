"""Segment math and the one seconds ↔ grid conversion pair."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.core.segments import clamp_segments, grid_to_seconds, seconds_to_grid


@settings(max_examples=50, deadline=None)
@given(t=st.floats(0, 5000), fps=st.floats(1, 120), stride=st.floats(0.5, 64), frames=st.floats(1, 64))
def test_seconds_grid_round_trip(t, fps, stride, frames):
    sec = torch.tensor([t], dtype=torch.float64)
    back = grid_to_seconds(seconds_to_grid(sec, fps, stride, frames), fps, stride, frames)
    assert torch.allclose(back, sec, atol=1e-9, rtol=1e-9)


def test_thumos_grid_formula():
    # THUMOS: g = (t * fps - 8) / 4 with stride 4, 16 frames
    assert float(seconds_to_grid(torch.tensor(10.0), 30.0, 4, 16)) == (300 - 8) / 4


def test_clamp_segments():
    segs = torch.tensor([[-1.0, 5.0], [3.0, 12.0]])
    assert clamp_segments(segs, 10.0).tolist() == [[0.0, 5.0], [3.0, 10.0]]
