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
    """Write the figure (creating the folder) and close it; returns the path."""
    from pathlib import Path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, **kwargs)
    plt.close(fig)
    return out
