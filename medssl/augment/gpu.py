"""Batched on-device augmentation: the same :class:`AugmentPlan` on ``[B, C, H, W]`` tensors.

With ``augment.device: cuda`` the DataLoader workers only decode and batch uint8 images;
:class:`BatchAugment` then draws every parameter per sample from a ``torch.Generator``
(on the CPU, so a seed gives the same parameters on every device) and runs:

* crop + resize, the D4 group / flips and small rotations folded into **one** affine map
  per sample and a single ``grid_sample`` (bilinear; reflection padding for rotations);
  sources larger than twice the output are first area-reduced to limit aliasing;
* HED stain jitter as a per-sample 3x3 matrix and offset in optical-density space
  (:func:`medssl.augment.hed.hed_jitter_matrix`);
* colour jitter (brightness, contrast, saturation, hue: same fixed order and formulas
  as the CPU path), random grayscale, Gaussian blur (per-sample kernels, one grouped
  convolution), channel adaptation and normalisation.
"""

from __future__ import annotations

import math
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from medssl.augment import colour, hed
from medssl.augment.geometry import fallback_crop
from medssl.augment.plan import AugmentPlan
from medssl.augment.presets import PresetParams, resolve_params
from medssl.errors import ConfigError

def _rand(n: int, gen: Optional[torch.Generator], lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


# ------------------------------------------------------------------------- geometry


def sample_crop_boxes(
    gen: Optional[torch.Generator],
    n: int,
    height: int,
    width: int,
    scale: Tuple[float, float],
    ratio: Tuple[float, float],
    keep_center: int = 0,
    attempts: int = 10,
) -> torch.Tensor:
    """``[n, 4]`` int64 boxes (top, left, height, width), sampled as
    :func:`medssl.augment.geometry.sample_resized_crop` (vectorised over samples)."""
    keep = min(int(keep_center), height, width)
    area = height * width * _rand(n * attempts, gen, *scale).view(n, attempts)
    logr = _rand(n * attempts, gen, math.log(ratio[0]), math.log(ratio[1])).view(n, attempts)
    r = torch.exp(logr)
    cw = torch.round(torch.sqrt(area * r)).long()
    ch = torch.round(torch.sqrt(area / r)).long()
    ok = (cw > 0) & (cw <= width) & (ch > 0) & (ch <= height) & (cw >= keep) & (ch >= keep)
    first = ok.long().argmax(dim=1)
    has = ok.any(dim=1)
    pick = torch.arange(n)
    ch, cw = ch[pick, first], cw[pick, first]
    fallback = fallback_crop(height, width, ratio)  # the largest centred crop within the ratio range
    ch = torch.where(has, ch, torch.full_like(ch, fallback.height))
    cw = torch.where(has, cw, torch.full_like(cw, fallback.width))
    r0, c0 = (height - keep) // 2, (width - keep) // 2
    if keep:
        top_lo, top_hi = (r0 + keep - ch).clamp(min=0), (height - ch).clamp(max=r0)
        left_lo, left_hi = (c0 + keep - cw).clamp(min=0), (width - cw).clamp(max=c0)
    else:
        top_lo, top_hi = torch.zeros_like(ch), height - ch
        left_lo, left_hi = torch.zeros_like(cw), width - cw
    top = top_lo + torch.floor(_rand(n, gen) * (top_hi - top_lo + 1)).long()
    left = left_lo + torch.floor(_rand(n, gen) * (left_hi - left_lo + 1)).long()
    top = torch.minimum(top, top_hi)
    left = torch.minimum(left, left_hi)
    top = torch.where(has, top, torch.full_like(top, fallback.top))
    left = torch.where(has, left, torch.full_like(left, fallback.left))
    return torch.stack([top, left, ch, cw], dim=1)


def d4_matrices(k: torch.Tensor) -> torch.Tensor:
    """``[n, 2, 2]`` matrices acting on output (x, y) coordinates that realise D4 element
    ``k`` exactly as :func:`medssl.augment.geometry.d4` does (k % 4 quarter turns, then a
    horizontal flip when k >= 4)."""
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    powers = torch.stack([torch.linalg.matrix_power(rot, i) for i in range(4)])
    m = powers[k % 4]
    flip = torch.where((k >= 4)[:, None], torch.tensor([-1.0, 1.0], dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    return m * flip[:, None, :]  # R^k @ diag(flip): flip the output x first


def crop_theta(boxes: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scale ``[n, 2]`` and centre ``[n, 2]`` (x, y in normalised [-1, 1] coordinates,
    align_corners=False) of each crop box."""
    top, left, ch, cw = boxes.double().unbind(1)
    sx, sy = cw / width, ch / height
    cx = 2.0 * (left + cw / 2.0) / width - 1.0
    cy = 2.0 * (top + ch / 2.0) / height - 1.0
    return torch.stack([sx, sy], 1), torch.stack([cx, cy], 1)


# --------------------------------------------------------------------- photometric


def hed_jitter_batch(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """HED jitter of a ``[B, 3, H, W]`` float batch in [0, 1] with per-sample ``a``, ``b``
    ``[B, 3]``: one 3x3 matrix + offset per sample in optical-density space."""
    m_in = torch.as_tensor(hed.HED_FROM_RGB, dtype=torch.float64, device=x.device)
    m_out = torch.as_tensor(hed.RGB_FROM_HED, dtype=torch.float64, device=x.device)
    k = m_in @ torch.diag_embed(a.double()) @ m_out  # [B, 3, 3]
    c = b.double() @ m_out  # [B, 3]
    od = -torch.log(x.clamp(min=hed.OD_EPS))
    od = torch.einsum("bchw,bcd->bdhw", od, k.to(x.dtype)) + c.to(x.dtype)[:, :, None, None]
    return torch.exp(-od).clamp(0.0, 1.0)


def _luma(x: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(colour.LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    d = delta.clamp(min=1e-12)
    h = torch.where(maxc == r, ((g - b) / d) % 6, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)
    t = torch.minimum(k, 4 - k).clamp(0, 1)
    return v[:, None] - (v * s)[:, None] * t


def colour_jitter_batch(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation, hue (per-sample factors ``f`` ``[B, 4]``) on a
    float batch in [0, 1]; identity factors are (1, 1, 1, 0)."""
    bshape = (-1, 1, 1, 1)
    x = (x * f[:, 0].view(bshape)).clamp(0, 1)
    gray = _luma(x) if x.shape[1] == 3 else x
    m = gray.mean(dim=(1, 2, 3), keepdim=True)
    c = f[:, 1].view(bshape)
    x = (c * x + (1 - c) * m).clamp(0, 1)
    if x.shape[1] == 3:
        s = f[:, 2].view(bshape)
        x = (s * x + (1 - s) * _luma(x)).clamp(0, 1)
        hsv = _rgb_to_hsv(x)
        hsv = torch.stack([(hsv[:, 0] + f[:, 3].view(-1, 1, 1)) % 1.0, hsv[:, 1], hsv[:, 2]], 1)
        x = _hsv_to_rgb(hsv).clamp(0, 1)
    return x


def blur_batch(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur with per-sample ``sigma`` ``[B]`` (sigma <= 0: no blur)."""
    b, c, h, w = x.shape
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    safe = sigma.double().clamp(min=1e-6)[:, None]
    k = torch.exp(-0.5 * (t[None] / safe) ** 2)
    k = k / k.sum(1, keepdim=True)
    delta = (t == 0).double().expand_as(k)
    k = torch.where((sigma > 0)[:, None], k, delta).to(x.dtype).to(x.device)
    k = k.repeat_interleave(c, dim=0)  # [B*C, K]
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def _adapt_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] == 3 and channels == 1:
        return _luma(x)
    raise ConfigError(f"cannot turn a {x.shape[1]}-channel batch into {channels} channels")


# ------------------------------------------------------------------------ pipeline


class BatchAugment:
    """Callable ``(batch [B, C, H, W] uint8 or float in [0, 1], generator) -> float32
    [B, C', S, S]`` on the batch's device, executing an :class:`AugmentPlan`."""

    def __init__(self, plan: AugmentPlan, image_size: int, name: str = "") -> None:
        if plan.stain_normalize:
            raise ConfigError(
                f"augmentation {name!r}: stain_normalize runs per image on the CPU; with augment.device "
                "'cuda' apply medssl.augment.stain_norm.MacenkoNormalizer in the dataset workers instead"
            )
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
            raise ConfigError(f"augmentation image_size must be an integer >= 8, got {image_size!r}")
        if plan.out_channels is not None:
            plan.normalisation(plan.out_channels)
        self.plan, self.image_size, self.name = plan, image_size, name
        self._radius = colour.blur_radius(plan.blur_sigma[1])

    def __repr__(self) -> str:
        return f"BatchAugment({self.name or self.plan.mode!r}, image_size={self.image_size})"

    def __call__(self, batch: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[1] not in (1, 3):
            shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise ConfigError(f"batched augmentation expects a [B, 1|3, H, W] tensor, got {shape}")
        p = self.plan
        x = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
        if p.work_channels == 3 and p.hed_theta > 0 and x.shape[1] != 3:
            raise ConfigError(f"augmentation {self.name!r} needs RGB batches for HED jitter, got {x.shape[1]} channel(s)")
        if p.work_channels is not None:
            x = _adapt_channels(x, p.work_channels)
        x = self._geometry(x, generator)
        if p.mode != "eval":
            x = self._photometric(x, generator)
        out_c = p.out_channels or x.shape[1]
        x = _adapt_channels(x, out_c)
        mean, std = p.normalisation(out_c)
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return ((x - m) / s).contiguous()

    def _geometry(self, x: torch.Tensor, gen: Optional[torch.Generator]) -> torch.Tensor:
        p, size = self.plan, self.image_size
        b, _, h, w = x.shape
        if p.mode == "eval":
            side = max(1, int(round(min(h, w) * p.crop_fraction)))
            boxes = torch.tensor([[(h - side) // 2, (w - side) // 2, side, side]]).expand(b, 4)
            lin = torch.eye(2, dtype=torch.float64).expand(b, 2, 2)
        else:
            boxes = sample_crop_boxes(gen, b, h, w, p.scale, p.ratio, p.keep_center)
            lin = torch.eye(2, dtype=torch.float64).expand(b, 2, 2)
            if p.d4:
                lin = lin @ d4_matrices(torch.randint(0, 8, (b,), generator=gen))
            for prob, axis in ((p.hflip_p, 0), (p.vflip_p, 1)):
                if prob > 0:
                    sign = torch.ones(b, 2, dtype=torch.float64)
                    sign[:, axis] = torch.where(_rand(b, gen) < prob, -1.0, 1.0)
                    lin = lin @ torch.diag_embed(sign)
            if p.rotate_degrees > 0:
                ang = torch.deg2rad(_rand(b, gen, -p.rotate_degrees, p.rotate_degrees))
                cos, sin = torch.cos(ang), torch.sin(ang)
                rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
                lin = lin @ rot
        scale, centre = crop_theta(boxes, h, w)
        theta = torch.cat([scale[:, :, None] * lin, centre[:, :, None]], dim=2)  # [B, 2, 3]
        if min(h, w) > 2 * size:  # area pre-reduction: bilinear sampling alone would alias
            f = 2 * size / min(h, w)
            x = F.interpolate(x, size=(max(1, round(h * f)), max(1, round(w * f))), mode="area")
        grid = F.affine_grid(theta.to(x.dtype).to(x.device), [b, x.shape[1], size, size], align_corners=False)
        pad = "reflection" if p.rotate_degrees > 0 else "border"
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=pad, align_corners=False)

    def _photometric(self, x: torch.Tensor, gen: Optional[torch.Generator]) -> torch.Tensor:
        p, b = self.plan, x.shape[0]
        dev = x.device
        if p.hed_theta > 0 and x.shape[1] == 3:
            on = (_rand(b, gen) < p.hed_p)[:, None]
            a = torch.where(on, _rand(3 * b, gen, 1 - p.hed_theta, 1 + p.hed_theta).view(b, 3), 1.0)
            off = torch.where(on, _rand(3 * b, gen, -p.hed_theta, p.hed_theta).view(b, 3), 0.0)
            x = hed_jitter_batch(x, a.to(dev), off.to(dev))
        if p.jitter_p > 0:
            on = _rand(b, gen) < p.jitter_p

            def fac(v: float) -> torch.Tensor:
                return _rand(b, gen, max(0.0, 1 - v), 1 + v) if v > 0 else torch.ones(b, dtype=torch.float64)

            f = torch.stack([fac(p.brightness), fac(p.contrast), fac(p.saturation), _rand(b, gen, -p.hue, p.hue)], 1)
            idx = on.nonzero().squeeze(1)
            if len(idx):  # only the selected samples: the HSV round trip is the costly part
                x = x.clone()
                x[idx.to(dev)] = colour_jitter_batch(x[idx.to(dev)], f[idx].to(x.dtype).to(dev))
        if p.grayscale_p > 0 and x.shape[1] == 3:
            on = (_rand(b, gen) < p.grayscale_p).to(dev).view(-1, 1, 1, 1)
            x = torch.where(on, _luma(x).expand_as(x), x)
        if p.gamma_p > 0:  # as the CPU path: x ** g, g ~ U(1 - gamma, 1 + gamma), with probability gamma_p
            on = _rand(b, gen) < p.gamma_p
            g = torch.where(on, _rand(b, gen, 1.0 - p.gamma, 1.0 + p.gamma), 1.0)
            x = x.clamp(0.0, 1.0) ** g.to(x.dtype).to(dev).view(-1, 1, 1, 1)
        if p.blur_active(self.image_size):
            on = _rand(b, gen) < p.blur_p
            sigma = _rand(b, gen, *p.blur_sigma)
            idx = on.nonzero().squeeze(1)
            if len(idx):
                x = x.clone()
                x[idx.to(dev)] = blur_batch(x[idx.to(dev)], sigma[idx], self._radius)
        return x


def build_batch_augmentation(
    name_or_cfg: Union[str, Mapping[str, Any], PresetParams], image_size: int, **overrides: Any
) -> BatchAugment:
    """The batched counterpart of :func:`medssl.augment.presets.build_augmentation`."""
    params = resolve_params(name_or_cfg, **overrides)
    return BatchAugment(params.plan(), image_size, name=params.preset)


def build_batch_views(
    spec: Union[str, Mapping[str, Any], PresetParams, Sequence[Union[str, Mapping[str, Any]]]],
    image_size: int,
    n_views: int = 2,
) -> List[BatchAugment]:
    """Batched counterpart of :func:`medssl.augment.views.build_views`: one
    :class:`BatchAugment` per view; call each on the batch (with one shared generator)."""
    if isinstance(spec, (str, Mapping, PresetParams)):
        if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 1:
            raise ConfigError(f"augment views must be a positive integer, got {n_views!r}")
        return [build_batch_augmentation(spec, image_size)] * n_views
    if not isinstance(spec, Sequence) or len(spec) == 0:
        raise ConfigError(f"augment views must be a preset, a mapping or a non-empty list of them, got {spec!r}")
    return [build_batch_augmentation(s, image_size) for s in spec]
