"""The drawings of tools/visualize.py: `timeline` (one video) and `pr` (PR curves, per-class AP)."""

from __future__ import annotations


def pyplot(command: str = "tools/visualize.py"):
    """matplotlib.pyplot on the file-only Agg backend, or a one-line install hint naming
    `command` (what the user ran, e.g. "tools/infer.py --plot")."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError(f"{command} needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, plt, out, **kwargs):
    """Write the figure (creating the folder) atomically and close it; returns the path.

    The PNG goes to a temporary file beside `out` that then replaces it (libs.utils.io.atomic_write):
    a symbolic link or a FIFO / device at `out` is refused, never written through or blocked on.
    """
    from pathlib import Path

    from libs.utils.io import atomic_write

    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(out, "wb") as f:
            fig.savefig(f, dpi=110, format=out.suffix.lstrip(".").lower() or "png", **kwargs)
    finally:
        plt.close(fig)
    return out
