import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medssl.errors import ConfigError
from medssl.objectives.snclr_attention import positiveness
from objective_helpers import unit


def _neighbours(b: int, k: int, d: int, seed: int) -> torch.Tensor:
    return torch.stack([unit(b, d, seed + i) for i in range(k)], 1)


def test_cosine_positiveness_is_a_softmax_of_cosines_rescaled_to_max_one():
    y, n = 3 * unit(2, 4, 0), _neighbours(2, 3, 4, 1)  # y not unit: the cosine normalises it
    probs, w = positiveness(y, n, None, None)
    ref = torch.softmax(torch.einsum("bd,bkd->bk", F.normalize(y, dim=1), n), dim=1)
    assert torch.allclose(probs, ref)
    assert torch.allclose(w.max(dim=1).values, torch.ones(2, dtype=w.dtype))


def test_linear_positiveness_scales_by_the_attention_width_and_takes_a_fixed_gamma():
    torch.manual_seed(0)
    f1, f2 = nn.Linear(4, 6, bias=False).double(), nn.Linear(4, 6, bias=False).double()
    y, n = unit(2, 4, 0), _neighbours(2, 3, 4, 1)
    probs, w = positiveness(y, n, f1, f2, gamma=0.5)
    ref = torch.softmax(torch.einsum("bd,bkd->bk", f1(y), f2(n)) / math.sqrt(6), dim=1)
    assert torch.allclose(probs, ref) and torch.allclose(w, ref / 0.5)


def test_linear_positiveness_names_the_width_mismatch():
    f1, f2 = nn.Linear(16, 6, bias=False), nn.Linear(16, 6, bias=False)
    with pytest.raises(ConfigError, match="dim=16 but the projections have width 4"):
        positiveness(unit(2, 4, 0).float(), _neighbours(2, 3, 4, 1).float(), f1, f2)
