"""The dataset every method trains on: one uint8 tensor decoded once up front.

Keeping all images as a single ``(N, 3, R, R)`` uint8 tensor lets augmentation run batched
on the training device and makes the decoded set cheap to cache and to index. The tensor
may be a memory-mapped cache file (:mod:`engine.data.cache`): nothing here reads all of
it, so only the pages of the batches actually cut from it become resident.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_MAX_CLASSES_IN_SUMMARY = 8


def check_labels(labels: torch.Tensor | None, class_names: list[str], n: int) -> None:
    """The label contract every source meets: None, or int64 ``(n,)`` indices into
    ``class_names`` (which is then the only place class names come from)."""
    if labels is not None:
        if labels.shape != (n,) or labels.dtype != torch.int64:
            raise ValueError("labels must be an int64 tensor of shape (N,)")
        k = len(class_names)
        if n and (int(labels.min()) < 0 or int(labels.max()) >= k):
            raise ValueError("labels out of range of class_names")
    elif class_names:
        raise ValueError("class_names given without labels")


@dataclass(eq=False)  # tensors have no single truth value, so compare by identity
class ImageDataset:
    """Decoded images with optional class labels (labels are used for evaluation only)."""

    name: str  # "shapes", "digits", or the folder path as given
    images: torch.Tensor  # (N, 3, R, R) uint8, contiguous, CPU (possibly memory-mapped)
    labels: torch.Tensor | None  # (N,) int64, or None when there are no labels
    class_names: list[str]  # [] when there are no labels
    files: list[str]  # one display name per image (relative path for folders)
    skipped: list[tuple[str, str]]  # (file path, reason) of files that could not be decoded
    from_cache: bool = False
    #: one caption per image where the set has them (the built-in shapes), else None;
    #: image methods ignore them, paired data (engine.data.paired) reads them
    captions: list[str] | None = None

    def __post_init__(self) -> None:
        # Catch shape mistakes here rather than deep inside a training step (metadata and
        # the small labels only: reading the images would page in a mapped set).
        im = self.images
        if im.dim() != 4 or im.shape[1] != 3 or im.shape[2] != im.shape[3]:
            raise ValueError(f"images must be (N, 3, R, R), got {tuple(im.shape)}")
        if im.dtype != torch.uint8:
            raise ValueError(f"images must be uint8, got {im.dtype}")
        n = im.shape[0]
        if len(self.files) != n:
            raise ValueError(f"{len(self.files)} file names for {n} images")
        check_labels(self.labels, self.class_names, n)
        if self.captions is not None:
            if len(self.captions) != n:
                raise ValueError(f"{len(self.captions)} captions for {n} images")
            if not all(isinstance(c, str) for c in self.captions):
                raise ValueError("captions must be strings")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def inputs(self) -> torch.Tensor:
        """What a batch is cut from (the data contract every source meets): the images."""
        return self.images

    def thumbnails(self, indices: torch.Tensor, size: int = 64) -> torch.Tensor | None:
        """uint8 ``(n, t, t, 3)`` previews (at most ``size`` px) for hover tooltips."""
        return thumbnails_of(self.images, indices, size)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def class_counts(self) -> list[int]:
        """Images per class, in ``class_names`` order; [] without labels."""
        if self.labels is None:
            return []
        return torch.bincount(self.labels, minlength=len(self.class_names)).tolist()

    def summary(self) -> str:
        """One line for status bars and logs, e.g. '6000 images, 6 classes (circle 1000, ...)'."""
        n = len(self)
        return summary_line(f"{n} image{'s' if n != 1 else ''}", self.labels is not None,
                            self.class_names, self.class_counts(), len(self.skipped))


def thumbnails_of(images: torch.Tensor, indices: torch.Tensor, size: int = 64) -> torch.Tensor:
    """uint8 ``(n, t, t, 3)`` previews of ``images[indices]``, at most ``size`` px."""
    imgs = images[indices]
    if imgs.shape[-1] > size:
        imgs = torch.nn.functional.interpolate(imgs.float(), size=(size, size),
                                               mode="bilinear", antialias=True)
        imgs = imgs.round().clamp(0, 255).to(torch.uint8)
    return imgs.permute(0, 2, 3, 1).contiguous()


def summary_line(head: str, labelled: bool, class_names: list[str], counts: list[int],
                 skipped: int, extra: tuple[str, ...] = ()) -> str:
    """'<head>, 6 classes (circle 1000, ...), <extra>, 3 files skipped': the one-line
    summary every image source shows, so paired data reads the same."""
    parts = [head]
    if not labelled:
        parts.append("no labels")
    else:
        k = len(class_names)
        pairs = [f"{c} {m}" for c, m in zip(class_names, counts, strict=True)]
        if k > _MAX_CLASSES_IN_SUMMARY:
            shown = pairs[: _MAX_CLASSES_IN_SUMMARY - 1]
            pairs = shown + [f"… {k - len(shown)} more"]
        parts.append(f"{k} class{'es' if k != 1 else ''} ({', '.join(pairs)})")
    parts.extend(extra)
    if skipped:
        parts.append(f"{skipped} file{'s' if skipped != 1 else ''} skipped")
    return ", ".join(parts)
