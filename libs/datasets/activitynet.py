"""ActivityNet-1.3: filtered annotations, training clean-up, usually `feat_sampling: resize`.

A video whose annotations are all filtered out stays in the split with no GT (segments None),
and so does a training video with no segment left inside its features (the reference crashes
on that case).
"""
from libs.datasets.base import DATASETS, ActivityNetFormatDataset


@DATASETS.register("anet")
class ActivityNetDataset(ActivityNetFormatDataset):
    """ActivityNet-1.3 (class-agnostic with num_classes 1 in the paper configs)."""

    filter_annotations = True
    skip_filtered_videos = False
    clip_to_features = True
