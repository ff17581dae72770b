"""collate: padding lengths, zero padding, masks, and the errors that name the video."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from libs.core.structures import Batch, VideoSample
from libs.datasets.collate import collate, padded_length


def _sample(video_id: str, num_feats: int, channels: int = 3) -> VideoSample:
    feats = torch.randn(channels, num_feats) + 5.0  # [C, T], never zero, so padding is visible
    return VideoSample(video_id, feats, torch.tensor([[0.0, 1.0]]), torch.tensor([0]), 30.0, 10.0, 4.0, 16.0)


def _check_padding(batch: Batch, samples: list[VideoSample], t_pad: int) -> None:
    assert batch.feats.shape == (len(samples), samples[0].feats.shape[0], t_pad)
    assert batch.masks.shape == (len(samples), 1, t_pad) and batch.masks.dtype == torch.bool
    for i, s in enumerate(samples):
        assert torch.equal(batch.feats[i, :, : s.num_feats], s.feats)
        assert (batch.feats[i, :, s.num_feats:] == 0).all()
        assert batch.masks[i, 0].tolist() == [t < s.num_feats for t in range(t_pad)]
    assert batch.samples == samples


def test_training_pads_every_sample_to_max_seq_len():
    samples = [_sample("a", 5), _sample("b", 16), _sample("c", 9)]
    _check_padding(collate(samples, max_seq_len=16, size_divisor=4, is_training=True), samples, 16)


def test_training_rejects_a_sample_longer_than_max_seq_len():
    with pytest.raises(ValueError, match="training video 'long' has 17 features > max_seq_len 16"):
        collate([_sample("ok", 4), _sample("long", 17)], max_seq_len=16, size_divisor=4, is_training=True)


def test_eval_short_video_is_padded_to_max_seq_len():
    samples = [_sample("a", 7)]
    _check_padding(collate(samples, max_seq_len=16, size_divisor=12, is_training=False), samples, 16)


def test_eval_long_video_is_padded_to_a_multiple_of_size_divisor():
    samples = [_sample("long", 50)]
    batch = collate(samples, max_seq_len=16, size_divisor=12, is_training=False)
    _check_padding(batch, samples, 60)
    assert batch.feats.shape[-1] % 12 == 0


def test_eval_exact_multiple_is_not_padded_further():
    samples = [_sample("long", 48)]
    _check_padding(collate(samples, max_seq_len=16, size_divisor=12, is_training=False), samples, 48)


def test_collate_does_not_modify_its_inputs():
    samples = [_sample("a", 5)]
    before = samples[0].feats.clone()
    collate(samples, max_seq_len=8, size_divisor=2, is_training=True)
    assert torch.equal(samples[0].feats, before) and samples[0].feats.shape == (3, 5)


def test_collate_errors():
    with pytest.raises(ValueError, match="empty list"):
        collate([], 8, 2, True)
    with pytest.raises(ValueError, match="video 'b' has 4 feature channels"):
        collate([_sample("a", 5, 3), _sample("b", 5, 4)], 8, 2, True)
    with pytest.raises(ValueError, match="size_divisor must be >= 1"):
        collate([_sample("a", 5)], 8, 0, False)


@given(num_feats=st.integers(1, 5000), max_seq_len=st.integers(1, 2304), divisor=st.integers(1, 768))
def test_eval_padded_length_properties(num_feats, max_seq_len, divisor):
    t_pad = padded_length(num_feats, max_seq_len, divisor, is_training=False)
    assert t_pad >= num_feats
    if num_feats <= max_seq_len:
        assert t_pad == max_seq_len
    else:
        assert t_pad % divisor == 0 and t_pad - num_feats < divisor


def test_batch_pin_memory_pins_feats_and_masks_and_keeps_samples(monkeypatch):
    """DataLoader(pin_memory=True) calls Batch.pin_memory(); both tensors must be pinned (CPU-testable via a recorder)."""
    pinned = []

    def fake_pin(self):
        pinned.append(self.shape)
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    batch = Batch(torch.ones(2, 3, 8), torch.ones(2, 1, 8, dtype=torch.bool), ["a", "b"])
    out = batch.pin_memory()
    assert isinstance(out, Batch) and out.samples == ["a", "b"]
    assert pinned == [torch.Size([2, 3, 8]), torch.Size([2, 1, 8])]
    assert torch.equal(out.feats, batch.feats) and torch.equal(out.masks, batch.masks)
