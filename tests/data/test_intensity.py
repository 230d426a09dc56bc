"""Windows on known values: DICOM's LINEAR edges, LINEAR_EXACT, SIGMOID, the named
windows, multi-window parsing and bad specs."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.data.intensity import NAMED_WINDOWS, Window, apply_window, parse_window, scale_range, window_channels
from medssl.errors import ConfigError


def test_linear_window_edges_follow_dicom():
    # center 40, width 400: x <= -160 -> 0, x > 239 -> 255 (PS3.3 C.11.2.1.2.1, half-unit offsets)
    x = np.array([-1000.0, -160.0, -159.0, 39.5, 239.0, 239.5, 3000.0])
    y = apply_window(x, Window(40.0, 400.0))
    assert y[0] == 0 and y[1] == 0 and y[2] == 1 and y[-1] == 255 and y[-2] == 255
    assert y[3] == 128  # the center maps to the middle: (0 / 399 + 0.5) * 255 = 127.5 -> 128
    assert y[4] == 255  # x = c - 0.5 + (w - 1) / 2 is the top of the linear part: 1.0


def test_linear_exact_and_sigmoid():
    x = np.array([-200.0, 0.0, 100.0, 200.0])
    assert apply_window(x, Window(0.0, 400.0, "LINEAR_EXACT")).tolist() == [0, 128, 191, 255]
    s = apply_window(np.array([0.0]), Window(0.0, 100.0, "SIGMOID"))
    assert s.tolist() == [128]


def test_named_and_multi_specs():
    assert parse_window("lung") == Window(*NAMED_WINDOWS["lung"])
    multi = parse_window("multi")
    assert window_channels(multi) == 3 and multi[2] == Window(400.0, 1800.0)
    assert parse_window(["brain", {"center": 1, "width": 2}, "auto"])[2] == "auto"
    assert window_channels(parse_window("auto")) == 1


@pytest.mark.parametrize("spec, msg", [("lungs", "unknown window"), ({"center": 1}, "exactly center and width"),
                                       ({"center": 0, "width": 0.5}, "width must be >= 1"),
                                       (["lung"], "exactly three"), (3, "a window is a name")])
def test_bad_specs(spec, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_window(spec)


def test_scale_range_flat_is_zero():
    assert scale_range(np.ones((2, 2)), 1.0, 1.0).tolist() == [[0, 0], [0, 0]]
    assert scale_range(np.array([0.0, 5.0, 10.0]), 0.0, 10.0).tolist() == [0, 128, 255]


def test_nan_and_infinite_values_are_defined():
    from medssl.data.intensity import minmax

    x = np.array([np.nan, 0.0, 5.0, 10.0, np.inf, -np.inf])
    assert minmax(x).tolist() == [0, 0, 128, 255, 255, 0]
    assert apply_window(x, Window(5.0, 11.0)).tolist()[0] == 0
    assert minmax(np.full(3, np.nan)).tolist() == [0, 0, 0]
