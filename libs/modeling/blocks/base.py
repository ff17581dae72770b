"""The contract every temporal block of the backbone follows."""
from torch import Tensor, nn

from libs.core.registry import Registry

BLOCKS = Registry("temporal block")


class TemporalBlock(nn.Module):
    """Residual block on masked sequences.

    forward(x [B, C, T] float, mask [B, 1, T] bool) -> (x [B, C, T // stride], mask [B, 1, T // stride])

    Outputs at masked (padded) positions must be exactly zero, unless a block documents that it
    reproduces the reference behaviour of carrying the residual stream there (see mamba.py).
    Constructor signature: (dim, stride=1, drop_path=0.0, **block_specific).
    A block whose class sets `takes_window = True` also receives `window_size` (its pyramid
    level's entry of `model.n_mha_win_size`) from the backbone.
    """

    takes_window = False

    def __init__(self, dim: int, stride: int = 1, drop_path: float = 0.0):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"{type(self).__name__}: stride must be 1 or 2, got {stride}")
        self.dim, self.stride = dim, stride

    def size_divisor(self) -> int:
        """Extra divisibility of T (at this block's level) the block needs, e.g. window attention → (w // 2) * 2."""
        return 1

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError
