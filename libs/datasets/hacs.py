"""HACS Segments v1.1.1: filtered annotations, emptied videos skipped, known bad videos ignored.

The reference HACS loader also serves FineAction, so its ignore list carries the FineAction ids
too; they cannot collide with YouTube ids, and keeping them gives parity with configs that load
FineAction through `hacs`.
"""
from libs.datasets.base import DATASETS, ActivityNetFormatDataset
from libs.datasets.fineaction import FINEACTION_DIRTY_VIDEOS

# dirty annotations in HACS (video-mamba-suite ignore list)
HACS_DIRTY_VIDEOS = ("eiT_NhgxphY", "26FlKZDLIIM", "u-8hXMbaO60")

# HACS videos whose features are missing (video-mamba-suite ignore list)
HACS_MISSING_VIDEOS = (
    "-LzyV1PtJXE", "6okHpDA7caA", "8P9hAN-teOU", "AcOgvJ6U0T8", "AkMSIaZyX00", "Cm2j1EhVkHc",
    "EEvcgmd8kzg", "HjunnoyAinU", "Ht2gV7oaqbo", "Jbu3hE_CQaw", "Lp1oWVjxm4I", "New9JV1dKSU",
    "PcltZ1RZmZ0", "Q_QRFa5r3s0", "S4ZC3rz0q5c", "ShwMX7iMdCw", "V9uNF5W9KjM", "ZrhHEvR84AE",
    "d0ViiZ_QsLo", "jsuwmH5Y7OM", "mAE0CQURjj8", "mllZ0ycwvTs", "mnhMpLONbtY", "oUMmneMSfC0",
    "tqBKTZxSxwQ", "vA4STJJyyxU", "xaAjiyc4VmM", "y41wrOt1K1M",
)


@DATASETS.register("hacs")
class HACSDataset(ActivityNetFormatDataset):
    """HACS Segments (class-agnostic with num_classes 1 in the paper configs)."""

    filter_annotations = True
    skip_filtered_videos = True
    clip_to_features = True
    builtin_ignore = HACS_DIRTY_VIDEOS + HACS_MISSING_VIDEOS + FINEACTION_DIRTY_VIDEOS
