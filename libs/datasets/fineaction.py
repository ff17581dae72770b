"""FineAction: HACS-style loading (the reference trains it with the `hacs` loader).

Three FineAction videos have broken annotations and are always skipped.
"""
from libs.datasets.base import DATASETS, ActivityNetFormatDataset

# dirty annotations in FineAction (video-mamba-suite ignore list)
FINEACTION_DIRTY_VIDEOS = ("v_00004011", "v_00006080", "v_00002783")


@DATASETS.register("fineaction")
class FineActionDataset(ActivityNetFormatDataset):
    """FineAction: 106 classes; filtered annotations, emptied videos skipped."""

    filter_annotations = True
    skip_filtered_videos = True
    clip_to_features = True
    builtin_ignore = FINEACTION_DIRTY_VIDEOS
