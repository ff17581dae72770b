"""1-D (temporal) NMS: hard NMS, soft-NMS, and the per-video `batched_nms` of ActionFormer.

Two primitives, each with three backends chosen by `backend=`:
    "ext"   the C++ kernel in libs._C (CPU tensors)
    "cuda"  its CUDA twin in libs._C_cuda (CUDA tensors; built by setup.py where CUDA is)
    "torch" the pure-PyTorch twin below (any device); it is the readable specification
    "auto"  ext / cuda when available for the tensors' device, else torch
`nms_device` says where the post-processing should run NMS for a model's outputs: on their GPU
when the CUDA NMS is built (no copy to the host first), else on the CPU.

The semantics (float32 IoU with +1e-6 areas, tie-breaking, soft-NMS pruning order) are those of
the ActionFormer / video-mamba-suite `nms_1d_cpu` extension, so detections match the published
code element for element; tests/test_ops_nms.py checks every backend against the twin.
"""

import os
from typing import Sequence

import torch
from torch import Tensor

from libs.ops import _ext


BUILD_CMD = _ext.BUILD_CMD
SOFT_NMS_METHODS = {0: "hard", 1: "linear", 2: "gaussian"}  # soft_nms_1d's integer (the kernels' ABI)
# batched_nms's method names (= test.nms_method) -> soft_nms_1d's integer; "hard" is plain NMS
BATCHED_NMS_METHODS = {"soft": 2, "linear": 1, "hard": None}


# --------------------------------------------------------------------------- backend choice
def _ext_has_cuda(op: str = "nms_1d") -> bool:
    """True when libs._C_cuda (the CUDA NMS) is built and exports `op`."""
    return _ext._C_cuda is not None and hasattr(_ext._C_cuda, op)


def nms_device(x: Tensor) -> torch.device:
    """Where to run NMS on a model output held on x's device: that GPU when the CUDA NMS is
    built, else the CPU. The environment variable LIBS_NMS_DEVICE=cpu keeps NMS on the CPU."""
    if x.is_cuda and _ext_has_cuda() and os.environ.get("LIBS_NMS_DEVICE", "") != "cpu":
        return x.device
    return torch.device("cpu")


def to_nms_device(segs: Tensor, scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A video's candidates (segs [N, 2], scores [N], labels [N]) detached, segs and scores as
    float32, all on `nms_device(segs)`. Not used by libs/inference/postprocess.py yet: it moves
    the outputs to the CPU and runs NMS there, so LIBS_NMS_DEVICE changes nothing in a run."""
    device = nms_device(segs)
    return (segs.detach().to(device).float(), scores.detach().to(device).float(),
            labels.detach().to(device))


def _resolve_backend(op: str, segs: Tensor, backend: str) -> str:
    """Pick the backend for `op` on `segs`' device; raise when an explicit one is unusable."""
    if backend == "auto":
        if segs.is_cuda:
            choice = "cuda" if _ext_has_cuda(op) else "torch"
        else:
            choice = "ext" if _ext.ext_has(op) else "torch"
        _ext.log_once(op, choice)  # once per op/backend, not per video
        return choice
    if backend not in ("ext", "cuda", "torch"):
        raise ValueError(f"{op}: unknown backend {backend!r}; use auto | ext | cuda | torch")
    if backend in ("ext", "cuda"):  # same order as before the CUDA NMS was its own extension
        _ext.require_ext(op)
        if backend == "ext" and not _ext.ext_has(op):
            raise RuntimeError(f"{op}: libs._C predates this op; rebuild it with: {BUILD_CMD}")
        if segs.is_cuda != (backend == "cuda"):  # before the CUDA-build check: the likelier mistake
            raise ValueError(
                f"{op}: backend {backend!r} cannot run on {segs.device} tensors; use backend='auto'"
            )
    if backend == "cuda" and not _ext_has_cuda(op):
        raise RuntimeError(
            f"{op}: libs._C_cuda (the CUDA NMS) is not built ({_ext.CUDA_IMPORT_ERROR}); on a GPU "
            f"machine with nvcc run: {BUILD_CMD}"
        )
    return backend


def nms_backends() -> dict:
    """Which backend `auto` picks per device, for `libs.ops.report()` / tools/check_env.py."""
    report = {}
    for op in ("nms_1d", "soft_nms_1d"):
        report[f"{op}[cpu]"] = "ext" if _ext.ext_has(op) else "torch"
        report[f"{op}[cuda]"] = "cuda" if _ext_has_cuda(op) else "torch"
    return report


def _check_inputs(op: str, segs: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """Validate shapes and return float32 contiguous copies/views (what the kernels expect)."""
    if segs.dim() != 2 or segs.shape[-1] != 2:
        raise ValueError(f"{op}: segs must be [N, 2], got {tuple(segs.shape)}")
    if scores.dim() != 1 or scores.shape[0] != segs.shape[0]:
        raise ValueError(
            f"{op}: scores must be [N] with N = {segs.shape[0]}, got {tuple(scores.shape)}"
        )
    if segs.device != scores.device:
        raise ValueError(f"{op}: segs on {segs.device} but scores on {scores.device}")
    return segs.detach().float().contiguous(), scores.detach().float().contiguous()


def _f32(x: float) -> float:
    """Round a Python float to float32: the C++ kernels compare against float32 thresholds."""
    return float(torch.tensor(float(x), dtype=torch.float32))


# --------------------------------------------------------------------------- pure-PyTorch twins
def _areas(x1: Tensor, x2: Tensor) -> Tensor:
    return x2 - x1 + 1e-6  # the reference's +1e-6, same float32 arithmetic as the kernel


def _iou_1d(
    ix1: Tensor, ix2: Tensor, iarea: Tensor, x1: Tensor, x2: Tensor, areas: Tensor
) -> Tensor:
    """IoU of one segment (0-dim ix1, ix2, iarea) with [M] segments, float32 as in the kernel."""
    inter = (torch.minimum(ix2, x2) - torch.maximum(ix1, x1)).clamp(min=0)  # [M]
    return inter / (iarea + areas - inter)  # [M]; same operation order as the C++ code


def _nms_1d_torch(segs: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Reference hard NMS. segs [N, 2] f32, scores [N] f32 -> kept indices [K] int64 by score."""
    n = segs.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=segs.device)
    # torch.sort is the same ATen call as the kernel's, so ties come out in the same order
    order = torch.sort(scores, dim=0, descending=True)[1]  # [N]
    x1, x2 = segs[order, 0], segs[order, 1]  # [N] each, by rank
    areas = _areas(segs[:, 0], segs[:, 1])[order]  # [N]
    thr = _f32(iou_threshold)
    suppressed = torch.zeros(n, dtype=torch.bool, device=segs.device)
    keep = []
    for a in range(n):  # greedy: each surviving rank suppresses the later ones it overlaps
        if suppressed[a]:
            continue
        keep.append(a)
        ovr = _iou_1d(x1[a], x2[a], areas[a], x1[a + 1 :], x2[a + 1 :], areas[a + 1 :])  # [N-a-1]
        suppressed[a + 1 :] |= ovr >= thr
    return order[torch.tensor(keep, dtype=torch.long, device=segs.device)]


def _soft_weight(ovr: Tensor, thr: float, sigma: float, method: int) -> Tensor:
    """Soft-NMS decay factors [M] for overlaps `ovr` [M] with the selected segment."""
    one = torch.ones_like(ovr)
    if method == 0:
        return torch.where(ovr >= thr, torch.zeros_like(ovr), one)
    if method == 1:
        return torch.where(ovr >= thr, 1 - ovr, one)
    # Gaussian ignores the threshold. exp in float64 then rounded: closest to the kernel's expf
    return torch.exp(((-(ovr * ovr)) / torch.full_like(ovr, sigma)).double()).float()


def _drop_low_scores(arrays: Sequence[Tensor], start: int, n: int, min_score: float) -> int:
    """Replay the kernel's pruning pass over slots [start, n) of the already-decayed scores.

    The kernel walks the slots upwards and replaces each dropped one (score < min_score) with
    the last active slot. Net effect, computed here without the loop: the k-th dropped slot of
    [start, m) receives the k-th surviving slot of [m, n) counted from the end, where
    m = start + #survivors. Keeping this exact order matters: it decides later ties.
    Returns m, the new number of active slots. `arrays[3]` holds the scores.
    """
    dropped = arrays[3][start:n] < min_score  # [n - start]
    m = start + int((~dropped).sum())
    holes = start + torch.nonzero(dropped[: m - start]).flatten()  # ascending
    donors = (m + torch.nonzero(~dropped[m - start :]).flatten()).flip(0)  # descending
    for arr in arrays:
        arr[holes] = arr[donors]
    return m


def _soft_nms_1d_torch(
    segs: Tensor, scores: Tensor, iou_threshold: float, sigma: float, min_score: float, method: int
) -> tuple[Tensor, Tensor]:
    """Reference soft-NMS. segs [N, 2] f32, scores [N] f32 ->
    (kept indices [K] int64 in selection order, dets [K, 3] f32 = x1, x2, decayed score)."""
    n = segs.shape[0]
    dets = segs.new_empty((n, 3))  # [N, 3]
    inds = torch.arange(n, device=segs.device)  # slot -> original index
    x1, x2, sc = segs[:, 0].clone(), segs[:, 1].clone(), scores.clone()  # working copies, permuted
    arrays = (x1, x2, _areas(x1, x2), sc, inds)
    thr, sig, floor = _f32(iou_threshold), _f32(sigma), _f32(min_score)
    i = 0
    while i < n:
        best = i + int(torch.argmax(sc[i:n]))  # argmax returns the first maximum, like the kernel
        for arr in arrays:  # swap the best segment into slot i
            arr[[i, best]] = arr[[best, i]]
        dets[i] = torch.stack([x1[i], x2[i], sc[i]])
        ovr = _iou_1d(
            x1[i], x2[i], arrays[2][i], x1[i + 1 : n], x2[i + 1 : n], arrays[2][i + 1 : n]
        )
        sc[i + 1 : n] *= _soft_weight(ovr, thr, sig, method)
        n = _drop_low_scores(arrays, i + 1, n, floor)
        i += 1
    return inds[:n], dets[:n]


# --------------------------------------------------------------------------- public primitives
def _compiled(backend: str, op: str):  # libs._C for "ext", libs._C_cuda for "cuda"
    return getattr(_ext._C_cuda if backend == "cuda" else _ext._C, op)


@torch.no_grad()
def nms_1d(segs: Tensor, scores: Tensor, iou_threshold: float, backend: str = "auto") -> Tensor:
    """Greedy hard NMS on temporal segments.

    Args:
        segs: [N, 2] (start, end); scores: [N]. Cast to float32.
        iou_threshold: a segment is suppressed when its IoU with a kept one is >= this.
        backend: "auto" | "ext" | "cuda" | "torch" (see the module docstring).
    Returns:
        [K] int64 indices into segs of the kept segments, by descending score.
    """
    segs, scores = _check_inputs("nms_1d", segs, scores)
    name = _resolve_backend("nms_1d", segs, backend)
    if name == "torch":
        return _nms_1d_torch(segs, scores, iou_threshold)
    return _compiled(name, "nms_1d")(segs, scores, float(iou_threshold))


@torch.no_grad()
def soft_nms_1d(
    segs: Tensor,
    scores: Tensor,
    iou_threshold: float,
    sigma: float,
    min_score: float,
    method: int,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Soft-NMS on temporal segments (Bodla et al.), reference pruning semantics.

    Args:
        segs: [N, 2]; scores: [N]. Cast to float32.
        iou_threshold: overlap at which methods 0 and 1 start to decay (ignored by method 2).
        sigma: Gaussian width, weight = exp(-iou^2 / sigma) (method 2 only).
        min_score: a segment whose decayed score falls below this is dropped.
        method: 0 hard, 1 linear (weight 1 - iou), 2 Gaussian.
        backend: "auto" | "ext" | "cuda" | "torch".
    Returns:
        inds: [K] int64 original indices in selection order (not always sorted by final score).
        dets: [K, 3] float32 rows (start, end, decayed score), same order.
    """
    if int(method) not in SOFT_NMS_METHODS:
        raise ValueError(f"soft_nms_1d: method must be one of {SOFT_NMS_METHODS}, got {method}")
    if int(method) == 2 and not sigma > 0:
        raise ValueError(f"soft_nms_1d: Gaussian soft-NMS needs sigma > 0, got {sigma}")
    segs, scores = _check_inputs("soft_nms_1d", segs, scores)
    name = _resolve_backend("soft_nms_1d", segs, backend)
    args = (float(iou_threshold), float(sigma), float(min_score), int(method))
    if name == "torch":
        return _soft_nms_1d_torch(segs, scores, *args)
    return _compiled(name, "soft_nms_1d")(segs, scores, *args)


# --------------------------------------------------------------------------- batched NMS
def _hard_nms_keep(
    segs: Tensor,
    scores: Tensor,
    labels: Tensor,
    iou_threshold: float,
    min_score: float,
    max_num: int,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """Hard NMS of one group: drop scores <= min_score first (hard NMS never changes a score),
    keep at most max_num (<= 0: all). Returns (segs [K, 2], scores [K], labels [K]) by desc. score.
    """
    if min_score > 0:
        valid = scores > min_score  # [N]
        segs, scores, labels = segs[valid], scores[valid], labels[valid]
    inds = nms_1d(segs, scores, iou_threshold, backend=backend)
    if max_num > 0:
        inds = inds[:max_num]
    return segs[inds], scores[inds], labels[inds]


def _soft_nms_keep(
    segs: Tensor,
    scores: Tensor,
    labels: Tensor,
    iou_threshold: float,
    sigma: float,
    min_score: float,
    method: int,
    max_num: int,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """Soft-NMS of one group, the first max_num (<= 0: all) in selection order.
    Returns (segs [K, 2], decayed scores [K], labels [K])."""
    inds, dets = soft_nms_1d(segs, scores, iou_threshold, sigma, min_score, method, backend=backend)
    n = min(len(inds), max_num) if max_num > 0 else len(inds)
    return dets[:n, :2], dets[:n, 2], labels[inds[:n].to(labels.device)]


def seg_voting(
    nms_segs: Tensor,
    all_segs: Tensor,
    all_scores: Tensor,
    iou_threshold: float,
    iou_weighted: bool = False,
) -> Tensor:
    """Segment voting (box voting): refine each kept segment by its overlapping candidates.

    refined_k = sum_j w_kj * seg_j / sum_j w_kj over ALL pre-NMS candidates j, with
    w_kj = [IoU(k, j) >= iou_threshold] * score_j (video-mamba-suite); `iou_weighted=True` also
    multiplies by IoU(k, j) (current ActionFormer). IoU has no epsilon, as in the reference.

    Args:
        nms_segs: [K, 2]; all_segs: [N, 2]; all_scores: [N] original (undecayed) scores.
    Returns:
        [K, 2] refined segments.
    """
    left = torch.maximum(nms_segs[:, None, 0], all_segs[None, :, 0])  # [K, N]
    right = torch.minimum(nms_segs[:, None, 1], all_segs[None, :, 1])  # [K, N]
    inter = (right - left).clamp(min=0)  # [K, N]
    nms_lens = (nms_segs[:, 1] - nms_segs[:, 0])[:, None]  # [K, 1]
    all_lens = (all_segs[:, 1] - all_segs[:, 0])[None, :]  # [1, N]
    iou = inter / (nms_lens + all_lens - inter)  # [K, N]
    weights = (iou >= iou_threshold).to(all_scores.dtype) * all_scores[None, :]  # [K, N]
    if iou_weighted:
        weights = weights * iou
    weights /= torch.sum(weights, dim=1, keepdim=True)
    return weights @ all_segs  # [K, 2]


@torch.no_grad()
def batched_nms(
    segs: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float, min_score: float,
    max_seg_num: int, method: str = "soft", multiclass: bool = True, sigma: float = 0.5,
    voting_thresh: float = 0.75, voting_iou_weighted: bool = False,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """NMS of one video's candidates, as ActionFormer's `batched_nms`.

    multiclass: NMS within each label (ascending label order), each capped at max_seg_num, then
    concatenated; no voting. Otherwise one class-agnostic NMS, then `seg_voting` against all
    input candidates when voting_thresh > 0 (scores are not changed by voting). Finally sort by
    score (descending, torch.sort as the reference) and keep the first max_seg_num.

    Args:
        segs: [N, 2]; scores: [N]; labels: [N] int.
        method: "soft" (Gaussian soft-NMS, the reference), "linear" (soft-NMS, weight 1 - iou)
            or "hard" (plain NMS, which first drops scores <= min_score): test.nms_method's names.
        max_seg_num: cap per class and overall; <= 0 means no cap (the reference would
            silently drop the last detection for -1).
        voting_iou_weighted: AF-style voting weights (also x IoU); default is video-mamba-suite.
        backend: forwarded to nms_1d / soft_nms_1d.
    Returns:
        segs [K, 2] float32, scores [K] float32, labels [K], by descending score.
    """
    if labels.shape != scores.shape:
        raise ValueError(
            f"batched_nms: labels {tuple(labels.shape)} and scores {tuple(scores.shape)} differ"
        )
    if method not in BATCHED_NMS_METHODS:
        raise ValueError(f"batched_nms: method must be one of {sorted(BATCHED_NMS_METHODS)}, got {method!r}")
    soft_method = BATCHED_NMS_METHODS[method]
    segs, scores = _check_inputs("batched_nms", segs, scores)
    if segs.shape[0] == 0:
        return segs.new_zeros((0, 2)), scores.new_zeros((0,)), labels.new_zeros((0,))

    def nms_group(g_segs: Tensor, g_scores: Tensor, g_labels: Tensor) -> tuple[Tensor, ...]:
        if soft_method is not None:
            return _soft_nms_keep(g_segs, g_scores, g_labels, iou_threshold, sigma, min_score,
                                  soft_method, max_seg_num, backend)
        return _hard_nms_keep(g_segs, g_scores, g_labels, iou_threshold, min_score, max_seg_num,
                              backend)

    if multiclass:
        groups = []
        for class_id in torch.unique(labels):  # sorted, as the reference iterates
            idx = torch.where(labels == class_id)[0]
            groups.append(nms_group(segs[idx], scores[idx], labels[idx]))
        new_segs, new_scores, new_labels = (torch.cat(parts) for parts in zip(*groups))
    else:
        new_segs, new_scores, new_labels = nms_group(segs, scores, labels)
        if voting_thresh > 0:
            new_segs = seg_voting(new_segs, segs, scores, voting_thresh, voting_iou_weighted)

    idxs = new_scores.sort(descending=True)[1]  # same (unstable) sort call as the reference
    if max_seg_num > 0:
        idxs = idxs[:max_seg_num]
    return new_segs[idxs], new_scores[idxs], new_labels[idxs]
