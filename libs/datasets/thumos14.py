"""THUMOS-14 (video-mamba-suite `thumos_new`): no annotation filtering, JSON fps, no clean-up.

Cliff Diving events overlap Diving events on purpose (multi-label targets handle it), so no
annotation is ever dropped. Every video of the split must have a feature file; a missing one is
an error at construction (the reference's skip-if-missing check is disabled in VMS).
"""
from libs.datasets.base import DATASETS, ActivityNetFormatDataset


@DATASETS.register("thumos14")
class Thumos14Dataset(ActivityNetFormatDataset):
    """THUMOS-14: 20 classes, Validation subset for training, Test subset for evaluation."""

    filter_annotations = False
    skip_filtered_videos = False
    clip_to_features = False
    default_duration = 1e8  # reference value for a video without duration (none in the real JSON)
