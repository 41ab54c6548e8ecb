"""Common corruptions in the style of CIFAR-10-C, generated on the fly in pure PyTorch.

After Hendrycks and Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations" (ICLR 2019). The five severities of every corruption use the parameters of
the CIFAR-10-C generation script (``make_cifar_c.py`` in ``hendrycks/robustness``); the
implementations here are written from the published formulas, not ported from that code.

Images are float tensors ``N x C x H x W`` in [0, 1] with 1 (grey) or 3 (RGB) channels, on any
device. Spatial parameters (blur sigmas, the defocus kernel) are defined for 32 px images, as in
CIFAR-10-C, and are scaled by ``min(H, W) / 32`` so that a corruption has the same relative
strength at other sizes; at 32 px they are exactly the CIFAR-10-C values (at 8 px the blurs
shrink below a pixel and barely change the image). Random numbers come only from the given CPU
``torch.Generator`` (drawn on the CPU, then moved to the images' device), so a fixed generator
seed reproduces the corruption exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import decode_jpeg, encode_jpeg

from ..errors import ConfigError

__all__ = ["CORRUPTIONS", "SEVERITIES", "Corruption", "available_corruptions", "check_corruption_names", "corrupt"]

SEVERITIES = range(1, 6)
REFERENCE_SIZE = 32  # image size at which the CIFAR-10-C spatial parameters are defined

Apply = Callable[[Tensor, Any, torch.Generator], Tensor]


@dataclass(frozen=True)
class Corruption:
    """One corruption: its name, family, whether it needs RGB, and its five severity levels."""

    name: str
    family: str  # "noise" | "blur" | "weather" | "digital", as in Hendrycks and Dietterich
    rgb_only: bool
    apply: Apply = field(repr=False)
    levels: tuple[Any, ...] = field(repr=False)

    def __call__(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        """Corrupt a batch ``x`` (N x C x H x W in [0, 1]) at ``severity`` 1..5."""
        _check_severity(severity)
        _check_images(x)
        _check_generator(generator)
        if self.rgb_only and x.shape[1] != 3:
            raise ConfigError(
                "corruption",
                self.name,
                f"it needs 3-channel RGB images; for {x.shape[1]}-channel images use one of: "
                + ", ".join(available_corruptions(1)),
            )
        work = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
        out = self.apply(work, self.levels[int(severity) - 1], generator)
        return out.clamp(0, 1).to(x.dtype)


# ---------------------------------------------------------------- checks


def _check_severity(severity: object) -> None:
    """Reject anything but an integer from 1 to 5."""
    if isinstance(severity, bool) or not isinstance(severity, Integral) or severity not in SEVERITIES:
        raise ConfigError("severity", severity, "use a severity from 1 to 5")


def _check_images(x: Tensor) -> None:
    """Reject tensors that are not a float batch of 1- or 3-channel images."""
    if x.dim() != 4 or not x.is_floating_point():
        raise ConfigError("images", f"{x.dtype} {tuple(x.shape)}", "pass a float batch N x C x H x W in [0, 1]")
    _check_channels(x.shape[1])


def _check_channels(channels: int) -> None:
    """Only grey (1) and RGB (3) images are supported."""
    if channels not in (1, 3):
        raise ConfigError("channels", channels, "use 1-channel (grey) or 3-channel (RGB) images")


def _check_generator(generator: torch.Generator) -> None:
    """Random numbers are drawn on the CPU so that results do not depend on the device."""
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ConfigError("generator", generator, "pass a CPU torch.Generator, e.g. torch.Generator().manual_seed(0)")


# ---------------------------------------------------------------- random draws and helpers


def _randn(x: Tensor, generator: torch.Generator) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn on the CPU, on ``x``'s device."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def _rand(x: Tensor, generator: torch.Generator) -> Tensor:
    """Uniform [0, 1) noise shaped like ``x``, drawn on the CPU, on ``x``'s device."""
    return torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def _spatial_scale(x: Tensor) -> float:
    """Factor that maps a length defined at 32 px to this image size (shorter side)."""
    return min(x.shape[-2:]) / REFERENCE_SIZE


def _gaussian_1d(sigma: float, radius: int, like: Tensor) -> Tensor:
    """Normalised 1-D Gaussian taps on ``-radius..radius``."""
    taps = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    return weights / weights.sum()


def _depthwise(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Convolve every channel with the same odd-sized 2-D ``kernel``, padding with ``mode``."""
    kh, kw = kernel.shape
    pad_h, pad_w = kh // 2, kw // 2
    if mode == "reflect" and (pad_h >= x.shape[-2] or pad_w >= x.shape[-1]):
        mode = "replicate"  # reflection needs the image to be larger than the padding
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode=mode)
    weight = kernel.to(x).expand(x.shape[1], 1, kh, kw)
    return F.conv2d(padded, weight, groups=x.shape[1])


def _rgb_to_hsv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """RGB batch (N x 3 x H x W) to hue, saturation and value, each N x H x W in [0, 1]."""
    r, g, b = x.unbind(1)
    value = x.amax(1)
    delta = value - x.amin(1)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(value == r, (g - b) / safe, torch.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = torch.where(delta > 0, torch.remainder(hue / 6, 1), torch.zeros_like(hue))
    saturation = delta / torch.where(value > 0, value, torch.ones_like(value))
    return hue, saturation, value


def _hsv_to_rgb(hue: Tensor, saturation: Tensor, value: Tensor) -> Tensor:
    """Hue, saturation and value (each N x H x W) back to an RGB batch N x 3 x H x W."""
    channels = []
    for n in (5, 3, 1):  # R, G, B
        k = torch.remainder(n + hue * 6, 6)
        channels.append(value - value * saturation * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels, 1)


# ---------------------------------------------------------------- noise


def _gaussian_noise(x: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """Additive Gaussian noise: ``x + N(0, std^2)``."""
    return x + std * _randn(x, generator)


def _shot_noise(x: Tensor, photons: float, generator: torch.Generator) -> Tensor:
    """Poisson (photon) noise: ``Poisson(x * photons) / photons``."""
    rate = (x.clamp(min=0) * photons).cpu()
    return (torch.poisson(rate, generator=generator) / photons).to(x.device)


def _impulse_noise(x: Tensor, amount: float, generator: torch.Generator) -> Tensor:
    """Salt and pepper: a fraction ``amount`` of values (per pixel and channel) set to 0 or 1."""
    hit = _rand(x, generator) < amount
    salt = (_rand(x, generator) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


def _speckle_noise(x: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """Multiplicative noise: ``x + x * N(0, std^2)``."""
    return x + x * std * _randn(x, generator)


# ---------------------------------------------------------------- blur


def _gaussian_blur(x: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """Gaussian blur (sigma at 32 px), truncated at 4 sigma, edges replicated."""
    sigma = sigma * _spatial_scale(x)
    radius = max(1, int(4 * sigma + 0.5))
    taps = _gaussian_1d(sigma, radius, x)
    rows = _depthwise(x, taps[None, :], "replicate")
    return _depthwise(rows, taps[:, None], "replicate")


def _cifar_defocus_kernel(radius: float, alias_blur: float) -> Tensor:
    """The CIFAR-10-C defocus kernel at 32 px: an aliased disk, then a 3 x 3 Gaussian."""
    half = math.ceil(radius) + 1
    taps = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = (taps[:, None] ** 2 + taps[None, :] ** 2 <= radius**2).to(torch.float64)
    gauss = _gaussian_1d(alias_blur, 1, disk)
    smoothed = F.conv2d(disk[None, None], (gauss[:, None] * gauss[None, :])[None, None], padding=1)[0, 0]
    return smoothed / smoothed.sum()


def _overlap(taps: int, scale: float) -> Tensor:
    """Overlap of target pixels with ``taps`` (odd) source pixels that are ``scale`` px wide.

    Both are centred on 0; row ``p`` gives how much of target pixel ``p`` each source pixel covers.
    """
    half_out = max(0, math.ceil(taps / 2 * scale - 0.5))
    target = torch.arange(-half_out, half_out + 1, dtype=torch.float64)[:, None]
    source = torch.arange(taps, dtype=torch.float64)[None, :] - taps // 2
    low = torch.maximum(target - 0.5, (source - 0.5) * scale)
    high = torch.minimum(target + 0.5, (source + 0.5) * scale)
    return (high - low).clamp(min=0)


def _rescale_kernel(kernel: Tensor, scale: float) -> Tensor:
    """Resample a square kernel whose taps are 1 px wide to taps ``scale`` px wide, by area."""
    overlap = _overlap(kernel.shape[0], scale)
    resampled = overlap @ kernel @ overlap.T
    return resampled / resampled.sum()


def _defocus_blur(x: Tensor, level: tuple[float, float], generator: torch.Generator) -> Tensor:
    """Defocus: a disk of ``radius`` smoothed by a Gaussian of ``alias_blur``, edges reflected.

    The kernel is built at 32 px exactly as for CIFAR-10-C (an aliased disk on the pixel grid,
    smoothed by a 3 x 3 Gaussian), then resampled by area to the image's scale, so its radius
    and smoothing both grow with ``min(H, W) / 32``.
    """
    radius, alias_blur = level
    kernel = _rescale_kernel(_cifar_defocus_kernel(radius, alias_blur), _spatial_scale(x))
    return _depthwise(x, kernel.to(x), "reflect")


# ---------------------------------------------------------------- weather


def _plasma_fractal(n: int, size: int, decay: float, generator: torch.Generator) -> Tensor:
    """``n`` diamond-square height maps (``size`` a power of two), each scaled to [0, 1].

    Every midpoint is the mean of its four neighbours (wrapping around) plus uniform noise of
    amplitude ``wibble^2``; ``wibble`` starts at 100 and is divided by ``decay`` at each level.
    """
    maps = torch.zeros(n, size, size, dtype=torch.float64)
    step, wibble = size, 100.0

    def wibbled(total: Tensor) -> Tensor:
        noise = torch.rand(total.shape, generator=generator, dtype=torch.float64) * 2 - 1
        return total / 4 + wibble * wibble * noise

    while step >= 2:
        half = step // 2
        corners = maps[:, ::step, ::step]
        squares = corners + corners.roll(-1, 1)
        maps[:, half::step, half::step] = wibbled(squares + squares.roll(-1, 2))
        centres, corners = maps[:, half::step, half::step], maps[:, ::step, ::step]
        maps[:, ::step, half::step] = wibbled(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
        maps[:, half::step, ::step] = wibbled(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        step, wibble = half, wibble / decay
    maps = maps - maps.amin((1, 2), keepdim=True)
    return maps / maps.amax((1, 2), keepdim=True).clamp(min=1e-12)


def _fog(x: Tensor, level: tuple[float, float], generator: torch.Generator) -> Tensor:
    """Fog: add a plasma fractal of strength ``thickness``, then rescale to the image's peak.

    The fractal is drawn at the next power of two of the image size and cropped, so its
    coarsest structure always spans the whole image, as at 32 px in CIFAR-10-C.
    """
    thickness, decay = level
    n, _, h, w = x.shape
    size = 1 << (max(h, w, 2) - 1).bit_length()
    plasma = _plasma_fractal(n, size, decay, generator)[:, None, :h, :w].to(x)
    peak = x.amax((1, 2, 3), keepdim=True)
    return (x + thickness * plasma) * peak / (peak + thickness)


def _brightness(x: Tensor, shift: float, generator: torch.Generator) -> Tensor:
    """Brighten: HSV value ``V = clip(V + shift)``; for grey images simply ``x + shift``."""
    if x.shape[1] == 1:
        return x + shift
    hue, saturation, value = _rgb_to_hsv(x)
    return _hsv_to_rgb(hue, saturation, (value + shift).clamp(0, 1))


# ---------------------------------------------------------------- digital


def _contrast(x: Tensor, factor: float, generator: torch.Generator) -> Tensor:
    """Shrink towards the per-image, per-channel spatial mean: ``(x - mean) * factor + mean``."""
    mean = x.mean((2, 3), keepdim=True)
    return (x - mean) * factor + mean


def _saturate(x: Tensor, level: tuple[float, float], generator: torch.Generator) -> Tensor:
    """Change saturation in HSV: ``S = clip(S * scale + shift)``."""
    scale, shift = level
    hue, saturation, value = _rgb_to_hsv(x)
    return _hsv_to_rgb(hue, (saturation * scale + shift).clamp(0, 1), value)


def _box_matrix(size_in: int, size_out: int, like: Tensor) -> Tensor:
    """Resampling matrix (size_out x size_in) of a box filter, as in PIL's ``Image.BOX``.

    Downsampling averages the source pixels whose centres fall in each target pixel;
    upsampling picks the nearest source pixel.
    """
    scale = size_in / size_out
    support = max(scale, 1.0) / 2
    centre = (torch.arange(size_out, dtype=like.dtype) + 0.5)[:, None] * scale
    source = torch.arange(size_in, dtype=like.dtype)[None, :] + 0.5
    weights = ((source > centre - support) & (source <= centre + support)).to(like.dtype)
    return (weights / weights.sum(1, keepdim=True)).to(like.device)


def _box_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize the last two dimensions of ``x`` to ``size`` with a box filter."""
    rows = _box_matrix(x.shape[-2], size[0], x)
    cols = _box_matrix(x.shape[-1], size[1], x)
    return rows @ x @ cols.T


def _pixelate(x: Tensor, factor: float, generator: torch.Generator) -> Tensor:
    """Box-filter down to ``int(side * factor)`` px per side, then box-filter back up."""
    h, w = x.shape[-2:]
    small = (max(1, int(h * factor + 1e-6)), max(1, int(w * factor + 1e-6)))
    return _box_resize(_box_resize(x, small), (h, w))


def _jpeg_compression(x: Tensor, quality: int, generator: torch.Generator) -> Tensor:
    """Round-trip every image through JPEG at ``quality`` (on the CPU, as 8-bit)."""
    images = (x.detach().cpu() * 255).round().clamp(0, 255).to(torch.uint8)
    decoded = [decode_jpeg(encode_jpeg(image.contiguous(), quality=quality)) for image in images]
    return (torch.stack(decoded).to(x.dtype) / 255).to(x.device)


# ---------------------------------------------------------------- registry


def _register(*corruptions: Corruption) -> dict[str, Corruption]:
    """Name -> corruption, in registration (= reporting) order."""
    return {corruption.name: corruption for corruption in corruptions}


CORRUPTIONS: dict[str, Corruption] = _register(
    Corruption("gaussian_noise", "noise", False, _gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10)),
    Corruption("shot_noise", "noise", False, _shot_noise, (500, 250, 100, 75, 50)),
    Corruption("impulse_noise", "noise", False, _impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07)),
    Corruption("speckle_noise", "noise", False, _speckle_noise, (0.06, 0.1, 0.12, 0.16, 0.2)),
    Corruption(
        "defocus_blur", "blur", False, _defocus_blur, ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))
    ),
    Corruption("gaussian_blur", "blur", False, _gaussian_blur, (0.4, 0.6, 0.7, 0.8, 1.0)),
    Corruption("fog", "weather", False, _fog, ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))),
    Corruption("brightness", "weather", False, _brightness, (0.05, 0.1, 0.15, 0.2, 0.3)),
    Corruption("contrast", "digital", False, _contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
    Corruption("saturate", "digital", True, _saturate, ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))),
    Corruption("pixelate", "digital", False, _pixelate, (0.95, 0.9, 0.85, 0.75, 0.65)),
    Corruption("jpeg_compression", "digital", False, _jpeg_compression, (80, 65, 58, 50, 40)),
)


def check_corruption_names(names: Iterable[str]) -> None:
    """Refuse names of corruptions this module does not implement, naming them all at once."""
    unknown = [name for name in names if name not in CORRUPTIONS]
    if unknown:
        raise ConfigError("corruptions", ",".join(unknown), f"choose from: {', '.join(CORRUPTIONS)}")


def available_corruptions(channels: int) -> list[str]:
    """Names of the corruptions that apply to 1-channel (grey) or 3-channel (RGB) images."""
    _check_channels(channels)
    return [name for name, c in CORRUPTIONS.items() if channels == 3 or not c.rgb_only]


def corrupt(x: Tensor, name: str, severity: int, generator: torch.Generator) -> Tensor:
    """Apply the corruption ``name`` at ``severity`` (1..5) to the batch ``x``."""
    if name not in CORRUPTIONS:
        raise ConfigError("corruption", name, "use one of: " + ", ".join(CORRUPTIONS))
    return CORRUPTIONS[name](x, severity, generator)
