"""The original XTConsistency data loading, in PyTorch, as a benchmark baseline.

Reproduces what `datasets.TaskDataset` + `task_configs.ImageTask.file_loader`
do per view and domain (shared/reference/xtconsistency.md §3.1, §3.4):
PIL open -> Resize(256, BILINEAR) on the shorter side -> CenterCrop(256) ->
ToTensor -> the task transform (depth /8000 clamp; edge_occlusion and
keypoints2d Gaussian sigma 2 then the 0.8-power normaliser; keypoints3d
/64131; sobel_edges from the rgb with scipy, as the original's SobelKernel).
torchvision has no CPU wheel here, so Resize/CenterCrop/ToTensor are written
out with PIL and torch exactly as torchvision implements them.

torch is a benchmark-only extra (requirements-bench.txt), never imported by
the library.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch.utils.data import Dataset

RESOLUTION = 256


def _resize_shorter(image: Image.Image, size: int) -> Image.Image:
    """torchvision.transforms.Resize(size, BILINEAR) with an int size."""
    width, height = image.size
    if min(width, height) == size:
        return image
    if width <= height:
        new = (size, int(size * height / width))
    else:
        new = (int(size * width / height), size)
    return image.resize(new, Image.BILINEAR)


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    left, top = round((width - size) / 2.0), round((height - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision ToTensor: uint8 images are divided by 255, 16-bit ones are not."""
    array = np.array(image, dtype=np.int32 if image.mode.startswith("I") else None)
    tensor = torch.from_numpy(array)
    tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()
    if tensor.dtype == torch.uint8:
        return tensor.float().div(255)
    return tensor.float()


def _gaussian_kernel(sigma: float = 2.0) -> torch.Tensor:
    radius = int(4 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    return (kernel[:, None] * kernel[None, :])[None, None]


_KERNEL = _gaussian_kernel()


def _blur(tensor: torch.Tensor) -> torch.Tensor:
    pad = _KERNEL.shape[-1] // 2
    padded = torch.nn.functional.pad(tensor[None], (pad,) * 4, mode="reflect")
    return torch.nn.functional.conv2d(padded, _KERNEL)[0]


def _power(scale: float):
    return lambda x: (_blur(x).clamp(min=0) ** 0.8 / scale**0.8).clamp(0, 1)


TRANSFORMS = {
    "rgb": lambda x: x,
    "normal": lambda x: x,
    "reshading": lambda x: x,
    "principal_curvature": lambda x: x,
    "depth_zbuffer": lambda x: (x / 8000.0).clamp(0, 1),
    "edge_occlusion": _power(4000.0),
    "keypoints2d": _power(2000.0),
    "keypoints3d": lambda x: (x / 64131.0).clamp(0, 1),
}


def sobel_from_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """The original's SobelKernel: channel mean -> gaussian_filter(2) -> sobel x, y -> hypot."""
    gray = ndimage.gaussian_filter(rgb.mean(0).numpy(), sigma=2)
    gx = ndimage.sobel(gray, axis=1, mode="constant")
    gy = ndimage.sobel(gray, axis=0, mode="constant")
    return torch.from_numpy(np.hypot(gx, gy)[None].astype(np.float32))


class OriginalStyleDataset(Dataset):
    """One item = one view: a tensor per domain, loaded file by file with PIL."""

    def __init__(self, views: list[dict[str, str]], domains: list[str]):
        self.views = views
        self.domains = domains

    def __len__(self) -> int:
        return len(self.views)

    def _load(self, path: str, domain: str) -> torch.Tensor:
        image = Image.open(path)
        image = _center_crop(_resize_shorter(image, RESOLUTION), RESOLUTION)
        tensor = TRANSFORMS[domain](_to_tensor(image))
        return tensor[:3]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        files = self.views[index]
        out = []
        for domain in self.domains:
            if domain == "edge_texture":
                out.append(sobel_from_rgb(self._load(files["rgb"], "rgb")))
            else:
                out.append(self._load(files[domain], domain))
        return tuple(out)
