"""What a dataset source is: the contract the trainer, the monitor and evaluation read.

Any object with these members trains: :class:`engine.data.ImageDataset` is the image
source; a text corpus or paired image-text data is another source plus methods that
understand its ``inputs`` (docs/ARCHITECTURE.md, section 2). Nothing above this line
indexes into a batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

import torch

if TYPE_CHECKING:
    from engine.data.paired import Pairs

#: what a batch is cut from: one tensor, or image-text pairs that index like one
Inputs: TypeAlias = "torch.Tensor | Pairs"


@runtime_checkable
class DataSource(Protocol):
    """A dataset as the engine sees it."""

    name: str  # shown in the run id, summaries and the window
    labels: torch.Tensor | None  # (N,) int64 class indices, used for evaluation only
    class_names: list[str]  # [] without labels
    files: list[str]  # one display name per item
    skipped: list[tuple[str, str]]  # (file, reason) of items that could not be read
    from_cache: bool

    def __len__(self) -> int: ...

    @property
    def inputs(self) -> Inputs:
        """What a batch is cut from by indices along its first dimension: a tensor, or
        :class:`~engine.data.paired.Pairs` that behaves like one."""
        ...

    @property
    def resolution(self) -> int:
        """Images: their side in pixels; other data: its natural size (sequence length)."""
        ...

    def class_counts(self) -> list[int]: ...

    def thumbnails(self, indices: torch.Tensor) -> torch.Tensor | None:
        """uint8 ``(n, t, t, 3)`` previews for hover tooltips, or None."""
        ...
