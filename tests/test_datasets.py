"""Datasets: ActivityNet-style JSON + feature files in tmp_path → VideoSample, per-dataset rules,
file formats, the loader and the clear errors (the crop: tests/test_training_transforms.py)."""
import json

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from libs.core.config import DatasetCfg
from libs.core.segments import grid_to_seconds, seconds_to_grid
from libs.core.structures import VideoSample
from libs.datasets import DATASETS, build_dataset, build_loader
from libs.datasets.features import FeatureFileError, save_features

DIM = 6


def _act(label, label_id, s, e):
    return {"label": label, "label_id": label_id, "segment": [s, e]}


DATABASE = {
    "vid_a": {"subset": "Validation", "duration": 20.0, "fps": 30.0,
              "annotations": [_act("Jump", 0, 2.0, 5.0), _act("Run", 1, 10.0, 12.5)]},
    "vid_b": {"subset": "Validation", "duration": 8.0, "fps": 25.0, "annotations": [_act("Run", 1, 1.0, 3.0)]},
    "vid_c": {"subset": "Test", "duration": 12.0, "fps": 24.0, "annotations": [_act("Swim", 2, 4.0, 6.0)]},
}


def _raw_feats(num_feats: int, dim: int = DIM) -> np.ndarray:
    """T x C array whose values encode (t, c), so transposes and slices are checkable."""
    return (np.arange(num_feats)[:, None] + 1000.0 * np.arange(dim)[None, :]).astype(np.float32)  # [T, C]


def _num_feats(value: dict, stride: float = 4, num_frames: float = 16) -> int:
    return int((value["duration"] * value["fps"] - num_frames) // stride) + 1


def _write(tmp_path, database=DATABASE, ext=".npy", prefix="", ftype="", lengths=None):
    """Write the JSON and one feature file per video; returns (json_file, feat_folder)."""
    json_file = tmp_path / "ann.json"
    json_file.write_text(json.dumps({"version": "test", "database": database}))
    folder = tmp_path / "feats"
    folder.mkdir(exist_ok=True)
    for vid, value in database.items():
        num = lengths[vid] if lengths and vid in lengths else _num_feats(value)
        save_features(str(folder / f"{prefix}{vid}{ftype}{ext}"), _raw_feats(num))
    return str(json_file), str(folder)


def _cfg(json_file, folder, **kw) -> DatasetCfg:
    base = dict(name="thumos14", json_file=json_file, feat_folder=folder, file_ext=".npy",
                train_split=("validation",), val_split=("test",), feat_stride=4, num_frames=16,
                input_dim=DIM, num_classes=3, max_seq_len=64)
    base.update(kw)
    return DatasetCfg(**base)


def _by_id(dataset, video_id) -> VideoSample:
    return dataset[dataset.video_ids.index(video_id)]


# ---------------------------------------------------------------------------------------------
# samples, units, labels


def test_sample_fields_dtypes_and_units(tmp_path):
    ds = build_dataset(_cfg(*_write(tmp_path)), "train", is_training=False)
    assert ds.split == ("validation",) and ds.video_ids == ["vid_a", "vid_b"] and len(ds) == 2
    s = _by_id(ds, "vid_a")
    assert isinstance(s, VideoSample) and s.video_id == "vid_a"
    assert s.feats.dtype == torch.float32 and s.feats.shape == (DIM, _num_feats(DATABASE["vid_a"]))
    assert torch.equal(s.feats, torch.from_numpy(_raw_feats(s.num_feats).T))  # stored T x C → [C, T]
    assert s.segments.dtype == torch.float32 and s.labels.dtype == torch.int64
    expected = (torch.tensor([[2.0, 5.0], [10.0, 12.5]]) * 30.0 - 0.5 * 16) / 4  # grid = (t*fps - nf/2)/stride
    torch.testing.assert_close(s.segments, expected)
    assert s.labels.tolist() == [0, 1]
    assert (s.fps, s.duration, s.feat_stride, s.feat_num_frames) == (30.0, 20.0, 4.0, 16.0)


def test_seconds_grid_round_trip(tmp_path):
    ds = build_dataset(_cfg(*_write(tmp_path)), "train", is_training=False)
    for video_id in ds.video_ids:
        s = _by_id(ds, video_id)
        back = grid_to_seconds(s.segments.double(), s.fps, s.feat_stride, s.feat_num_frames)
        original = torch.tensor([a["segment"] for a in DATABASE[video_id]["annotations"]], dtype=torch.float64)
        torch.testing.assert_close(back, original, atol=1e-5, rtol=0)
    seconds = torch.rand(50, 2, dtype=torch.float64) * 100
    torch.testing.assert_close(grid_to_seconds(seconds_to_grid(seconds, 29.97, 8, 16), 29.97, 8, 16), seconds)


def test_label_dict_is_built_over_all_subsets(tmp_path):
    ds = build_dataset(_cfg(*_write(tmp_path)), "train", is_training=False)  # Swim only occurs in Test
    assert ds.label_dict == {"Jump": 0, "Run": 1, "Swim": 2}
    assert ds.id_to_name == {0: "Jump", 1: "Run", 2: "Swim"}


def test_class_agnostic_labels_are_zero(tmp_path):
    ds = build_dataset(_cfg(*_write(tmp_path), num_classes=1), "train", is_training=False)
    assert all(ds[i].labels.eq(0).all() for i in range(len(ds)))


def test_num_classes_mismatch_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="3 action labels but dataset.num_classes = 5"):
        build_dataset(_cfg(*_write(tmp_path), num_classes=5), "train", is_training=False)


def test_default_fps_overrides_json_fps(tmp_path):
    ds = build_dataset(_cfg(*_write(tmp_path), default_fps=10.0), "train", is_training=False)
    s = _by_id(ds, "vid_a")
    assert s.fps == 10.0
    torch.testing.assert_close(s.segments[0], torch.tensor([(2.0 * 10 - 8) / 4, (5.0 * 10 - 8) / 4]))


def test_registry_names_and_split_argument(tmp_path):
    assert {"thumos14", "anet", "hacs", "fineaction", "activitynet_format"} <= set(DATASETS)
    cfg = _cfg(*_write(tmp_path))
    assert build_dataset(cfg, "val", is_training=False).video_ids == ["vid_c"]
    with pytest.raises(ValueError, match="'train' or 'val'"):
        build_dataset(cfg, "test", is_training=False)
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        build_dataset(_cfg(*_write(tmp_path), name="nope"), "train", is_training=False)


# ---------------------------------------------------------------------------------------------
# file formats, downsampling, resize


@pytest.mark.parametrize("ext", [".pt", ".npy", ".npz"])
def test_file_formats(tmp_path, ext):
    json_file, folder = _write(tmp_path, ext=ext, prefix="v_", ftype="_spatial_feature")
    cfg = _cfg(json_file, folder, file_ext=ext, file_prefix="v_", feature_type="_spatial_feature")
    s = _by_id(build_dataset(cfg, "train", is_training=False), "vid_b")
    assert s.feats.dtype == torch.float32
    assert torch.equal(s.feats, torch.from_numpy(_raw_feats(_num_feats(DATABASE["vid_b"])).T))


def test_npz_without_feats_key_uses_first_array(tmp_path):
    json_file, folder = _write(tmp_path)
    for vid, value in DATABASE.items():
        np.savez(f"{folder}/{vid}.npz", _raw_feats(_num_feats(value)), np.zeros(3))
    s = _by_id(build_dataset(_cfg(json_file, folder, file_ext=".npz"), "train", is_training=False), "vid_a")
    assert s.feats.shape == (DIM, _num_feats(DATABASE["vid_a"]))


def test_single_hdf5_store_keyed_by_prefix_and_id(tmp_path):
    json_file, _ = _write(tmp_path)
    h5_file = tmp_path / "all_feats.hdf5"
    with h5py.File(h5_file, "w") as fid:
        for vid, value in DATABASE.items():
            fid.create_dataset(f"v_{vid}", data=_raw_feats(_num_feats(value)))
    cfg = _cfg(json_file, str(h5_file), file_prefix="v_", feature_type="_ignored_for_h5")
    s = _by_id(build_dataset(cfg, "train", is_training=False), "vid_a")
    assert torch.equal(s.feats, torch.from_numpy(_raw_feats(_num_feats(DATABASE["vid_a"])).T))


def test_downsampling_takes_every_rth_feature_and_scales_the_stride(tmp_path):
    ds = build_dataset(_cfg(*_write(tmp_path), downsample_rate=2), "train", is_training=False)
    s = _by_id(ds, "vid_a")
    raw = torch.from_numpy(_raw_feats(_num_feats(DATABASE["vid_a"])).T)  # [C, T_raw]
    assert torch.equal(s.feats, raw[:, ::2]) and s.feat_stride == 8.0 and s.feat_num_frames == 16.0
    torch.testing.assert_close(s.segments[0], torch.tensor([(2.0 * 30 - 8) / 8, (5.0 * 30 - 8) / 8]))


def test_resize_mode_rewrites_stride_and_interpolates(tmp_path):
    json_file, folder = _write(tmp_path, lengths={"vid_a": 37})
    cfg = _cfg(json_file, folder, name="anet", feat_sampling="resize", feat_stride=8, max_seq_len=16,
               default_fps=30.0)
    s = _by_id(build_dataset(cfg, "train", is_training=False), "vid_a")
    raw = torch.from_numpy(_raw_feats(37).T)  # [C, 37]
    expected = F.interpolate(raw[None], size=16, mode="linear", align_corners=False)[0]
    torch.testing.assert_close(s.feats, expected)
    stride = ((37 - 1) * 8 + 16) / 16
    assert s.feat_stride == pytest.approx(stride) and s.feat_num_frames == pytest.approx(stride)
    torch.testing.assert_close(s.segments[0], torch.tensor([2.0 * 30 / stride - 0.5, 5.0 * 30 / stride - 0.5]))


def test_resize_with_downsampling_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="downsample_rate has no effect"):
        build_dataset(_cfg(*_write(tmp_path), name="anet", feat_sampling="resize", downsample_rate=2),
                      "train", is_training=False)


# ---------------------------------------------------------------------------------------------
# per-dataset annotation rules


FILTER_DB = {
    "dup": {"subset": "training", "duration": 10.0, "annotations": [
        _act("A", 0, 1.0, 3.0), _act("A", 0, 1.0005, 3.0005), _act("B", 1, 1.0, 3.0), _act("A", 0, 4.0, 4.0)]},
    "allbad": {"subset": "training", "duration": 10.0, "annotations": [_act("A", 0, 5.0, 2.0)]},
    "noann": {"subset": "training", "duration": 10.0, "annotations": []},
    "eiT_NhgxphY": {"subset": "training", "duration": 10.0, "annotations": [_act("A", 0, 1.0, 2.0)]},
    "v_00004011": {"subset": "training", "duration": 10.0, "annotations": [_act("A", 0, 1.0, 2.0)]},
    "user_bad": {"subset": "training", "duration": 10.0, "annotations": [_act("A", 0, 1.0, 2.0)]},
}


def _filter_cfg(tmp_path, name, **kw):
    json_file, folder = _write(tmp_path, database=FILTER_DB, lengths={v: 70 for v in FILTER_DB})
    return _cfg(json_file, folder, name=name, num_classes=2, default_fps=30.0, train_split=("training",),
                ignore_videos=("user_bad",), **kw)


def test_anet_filters_duplicates_and_keeps_emptied_videos(tmp_path):
    ds = build_dataset(_filter_cfg(tmp_path, "anet"), "train", is_training=False)
    assert ds.video_ids == ["dup", "allbad", "noann", "eiT_NhgxphY", "v_00004011"]  # only the config list
    s = _by_id(ds, "dup")
    assert s.labels.tolist() == [0, 1]  # the near-duplicate A and the zero-length A are gone
    assert _by_id(ds, "allbad").segments is None and _by_id(ds, "noann").segments is None


@pytest.mark.parametrize("name, expected", [
    ("hacs", ["dup", "noann"]),  # the reference HACS list also carries the FineAction ids
    ("fineaction", ["dup", "noann", "eiT_NhgxphY"]),
])
def test_hacs_fineaction_skip_emptied_and_ignored_videos(tmp_path, name, expected):
    ds = build_dataset(_filter_cfg(tmp_path, name), "train", is_training=False)
    assert ds.video_ids == expected  # "allbad" lost every annotation → skipped; "noann" never had any → kept
    assert _by_id(ds, "dup").labels.tolist() == [0, 1]
    assert _by_id(ds, "noann").segments is None


def test_thumos_keeps_every_annotation(tmp_path):
    # THUMOS filters nothing, so a segment with end <= start is an error, not silently kept
    with pytest.raises(ValueError, match=r"video 'dup' annotation 3: segment \[4\.0, 4\.0\]: end <= start"):
        build_dataset(_filter_cfg(tmp_path, "thumos14"), "train", is_training=False)
    database = {vid: dict(v, annotations=[a for a in v["annotations"] if a["segment"][0] < a["segment"][1]])
                for vid, v in FILTER_DB.items()}  # fmt: skip
    json_file, folder = _write(tmp_path, database=database, lengths={v: 70 for v in database})
    cfg = _cfg(json_file, folder, name="thumos14", num_classes=2, default_fps=30.0, train_split=("training",),
               ignore_videos=("user_bad",))
    ds = build_dataset(cfg, "train", is_training=False)
    assert len(ds) == 5 and len(_by_id(ds, "dup").labels) == 3  # near-duplicates kept, only the config ignore list


def test_training_cleanup_clamps_and_drops_segments_past_the_features(tmp_path):
    # grid = (t * 30 - 8) / 4; 20 features + feat_offset 2 → vid_len 22
    database = {"v": {"subset": "training", "duration": 100.0, "annotations": [
        _act("A", 0, 1.0, 2.0),  # [5.5, 13]: inside
        _act("A", 0, 2.8, 3.6),  # [19, 25]: 3/6 inside → kept, end clamped to 22
        _act("A", 0, 3.0, 5.0),  # [20.5, 35.5]: 1.5/15 inside → dropped
        _act("A", 0, 7.0, 8.0),  # [50.5, 58]: starts past the end → dropped
    ]}}
    json_file, folder = _write(tmp_path, database=database, lengths={"v": 20})
    cfg = _cfg(json_file, folder, name="anet", num_classes=1, default_fps=30.0, train_split=("training",))
    s = build_dataset(cfg, "train", is_training=True)[0]  # 20 <= max_seq_len and no crop_ratio: no crop
    torch.testing.assert_close(s.segments, torch.tensor([[5.5, 13.0], [19.0, 22.0]]))
    assert build_dataset(cfg, "train", is_training=False)[0].segments.shape == (4, 2)  # evaluation: untouched


def test_training_cleanup_with_nothing_left_gives_none(tmp_path):
    database = {"v": {"subset": "training", "duration": 100.0, "annotations": [_act("A", 0, 50.0, 60.0)]}}
    json_file, folder = _write(tmp_path, database=database, lengths={"v": 20})
    cfg = _cfg(json_file, folder, name="anet", num_classes=1, default_fps=30.0, train_split=("training",))
    s = build_dataset(cfg, "train", is_training=True)[0]
    assert s.segments is None and s.labels is None and s.num_feats == 20


def test_training_sample_is_cropped_to_max_seq_len(tmp_path):
    json_file, folder = _write(tmp_path)
    ds = build_dataset(_cfg(json_file, folder, max_seq_len=32, crop_ratio=(0.9, 1.0)), "train", is_training=True)
    s = _by_id(ds, "vid_a")
    assert s.num_feats == 32 and len(s.segments) >= 1 and (s.segments >= 0).all() and (s.segments <= 32).all()


# ---------------------------------------------------------------------------------------------
# loader


def test_loader_batches_and_worker_seeding(tmp_path):
    json_file, folder = _write(tmp_path)
    ds = build_dataset(_cfg(json_file, folder, max_seq_len=32, crop_ratio=(0.5, 1.0)), "train", is_training=True)

    def epoch(seed):
        loader = build_loader(ds, batch_size=2, num_workers=1, is_training=True, max_seq_len=32, size_divisor=8,
                              generator=torch.Generator().manual_seed(seed))
        return [b.feats for b in loader]

    first = epoch(3)
    assert len(first) == 1 and first[0].shape == (2, DIM, 32)
    assert torch.equal(first[0], epoch(3)[0])  # the same generator gives the same crops
    # workers reseed Python `random` from the generator, so other seeds give other crops
    assert any(not torch.equal(first[0], epoch(seed)[0]) for seed in (4, 5, 6))


def test_eval_loader_uses_one_video_per_step(tmp_path):
    json_file, folder = _write(tmp_path)
    ds = build_dataset(_cfg(json_file, folder, max_seq_len=16), "train", is_training=False)
    batches = list(build_loader(ds, batch_size=4, num_workers=0, is_training=False, max_seq_len=16, size_divisor=12))
    assert [len(b) for b in batches] == [1, 1]
    assert batches[0].feats.shape[-1] == 156  # vid_a: 147 features > 16 → next multiple of 12
    assert batches[0].masks.sum() == 147


# ---------------------------------------------------------------------------------------------
# clear errors


def test_missing_feature_file_names_video_and_path(tmp_path):
    json_file, folder = _write(tmp_path, ftype="_spatial_feature")
    (tmp_path / "feats" / "vid_b_spatial_feature.npy").unlink()
    cfg = _cfg(json_file, folder, feature_type="_spatial_feature")
    with pytest.raises(FileNotFoundError, match=r"video 'vid_b': expected .*feats/vid_b_spatial_feature\.npy"):
        build_dataset(cfg, "train", is_training=False)


def test_missing_json_or_folder(tmp_path):
    json_file, folder = _write(tmp_path)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        build_dataset(_cfg(str(tmp_path / "nope.json"), folder), "train", is_training=False)
    with pytest.raises(FileNotFoundError, match="feature folder not found"):
        build_dataset(_cfg(json_file, str(tmp_path / "nofolder")), "train", is_training=False)


def test_hdf5_missing_key(tmp_path):
    json_file, _ = _write(tmp_path)
    h5_file = tmp_path / "f.h5"
    with h5py.File(h5_file, "w") as fid:
        fid.create_dataset("vid_a", data=_raw_feats(10))
    with pytest.raises(FileNotFoundError, match=r"video 'vid_b': expected key 'vid_b'"):
        build_dataset(_cfg(json_file, str(h5_file)), "train", is_training=False)


def _corrupt(path, kind):
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "unreadable":
        path.write_bytes(b"this is not a numpy file")
    elif kind == "not 2-D":
        np.save(path, np.zeros((3, 4, DIM), dtype=np.float32))
    elif kind == "wrong dim":
        np.save(path, np.zeros((10, DIM + 1), dtype=np.float32))
    elif kind == "zero length":
        np.save(path, np.zeros((0, DIM), dtype=np.float32))
    else:
        np.save(path, np.full((10, DIM), np.nan, dtype=np.float32))


@pytest.mark.parametrize("kind, message", [
    ("empty", "the file is empty"), ("unreadable", "cannot be read"), ("not 2-D", "expected a 2-D T x C array"),
    ("wrong dim", "has 7 channels but dataset.input_dim = 6"), ("zero length", "holds 0 features"),
    ("nan", "NaN or Inf"),
])
def test_bad_feature_files_are_named(tmp_path, kind, message):
    json_file, folder = _write(tmp_path)
    path = tmp_path / "feats" / "vid_b.npy"
    _corrupt(path, kind)
    ds = build_dataset(_cfg(json_file, folder), "train", is_training=False)
    with pytest.raises(FeatureFileError, match=message) as info:
        _by_id(ds, "vid_b")
    assert str(path) in str(info.value)


def test_pt_file_must_hold_a_tensor(tmp_path):
    json_file, folder = _write(tmp_path, ext=".pt")
    torch.save({"feats": torch.zeros(10, DIM)}, tmp_path / "feats" / "vid_b.pt")
    ds = build_dataset(_cfg(json_file, folder, file_ext=".pt"), "train", is_training=False)
    with pytest.raises(FeatureFileError, match="expected a saved tensor"):
        _by_id(ds, "vid_b")


def test_transposed_features_get_a_hint(tmp_path):
    json_file, folder = _write(tmp_path)
    np.save(tmp_path / "feats" / "vid_b.npy", _raw_feats(10).T)  # C x T by mistake
    ds = build_dataset(_cfg(json_file, folder), "train", is_training=False)
    with pytest.raises(FeatureFileError, match="stored as C x T"):
        _by_id(ds, "vid_b")


def test_missing_fps_needs_default_fps(tmp_path):
    database = {"v": {"subset": "training", "duration": 10.0, "annotations": [_act("A", 0, 1.0, 2.0)]}}
    json_file, folder = _write(tmp_path, database=database, lengths={"v": 20})
    with pytest.raises(ValueError, match="video 'v' has no 'fps'; set dataset.default_fps"):
        build_dataset(_cfg(json_file, folder, num_classes=1, train_split=("training",)), "train", is_training=False)


def test_bad_arguments_fail_before_reading_files(tmp_path):
    json_file, folder = _write(tmp_path)
    with pytest.raises(ValueError, match="file_ext must be one of"):
        build_dataset(_cfg(json_file, folder, file_ext="npy"), "train", is_training=False)
    with pytest.raises(ValueError, match="feat_sampling must be one of"):
        build_dataset(_cfg(json_file, folder, feat_sampling="fixed"), "train", is_training=False)
    with pytest.raises(ValueError, match="crop_ratio must be"):
        build_dataset(_cfg(json_file, folder, crop_ratio=(1.0, 0.5)), "train", is_training=False)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_annotation_path_that_is_no_regular_file_is_named_as_such(tmp_path, kind):
    """A FIFO (or /dev/zero) or a folder as dataset.json_file: said so, not "not found", no hang."""
    import os

    json_file, folder = _write(tmp_path)
    odd = tmp_path / "odd.json"
    os.mkfifo(odd) if kind == "fifo" else odd.mkdir()
    with pytest.raises(ValueError, match="not a regular file|is a folder|directory"):
        build_dataset(_cfg(str(odd), folder), "train", is_training=False)
