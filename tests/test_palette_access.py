"""The band palette stays readable for colour-blind readers: after a simulated deuteranopia or
protanopia (Machado, Oliveira and Fernandes 2009, severity 1.0, applied in linear RGB) every pair
of band colours stays clearly apart in CIELAB, and each band colour as a fill reaches 3:1 on white."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from healthscore.spec.palette import BAND_COLOURS

MACHADO = {
    "deuteranopia": np.array(
        [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]
    ),
    "protanopia": np.array(
        [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]
    ),
}
SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
WHITE = np.array([0.95047, 1.0, 1.08883])
MIN_DELTA_E = 25.0  # CIE76; 2.3 is a just-noticeable difference, 25 is "obviously another colour"


def linear(hexa: str) -> np.ndarray:
    c = np.array([int(hexa[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def lab(rgb_linear: np.ndarray) -> np.ndarray:
    xyz = SRGB_TO_XYZ @ np.clip(rgb_linear, 0, 1) / WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def contrast(a: str, b: str) -> float:
    la, lb = (float(linear(h) @ [0.2126, 0.7152, 0.0722]) for h in (a, b))
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def test_contrast_formula_on_known_pairs():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


def test_lab_on_known_colours():
    assert lab(linear("#ffffff")) == pytest.approx([100, 0, 0], abs=0.05)
    assert lab(linear("#ff0000")) == pytest.approx([53.24, 80.09, 67.20], abs=0.1)


@pytest.mark.parametrize("vision", ["normal", *MACHADO])
def test_band_colours_stay_apart(vision):
    matrix = MACHADO.get(vision, np.eye(3))
    seen = {name: lab(matrix @ linear(hexa)) for name, hexa in BAND_COLOURS.items()}
    gaps = {(a, b): float(np.linalg.norm(seen[a] - seen[b])) for a, b in itertools.combinations(seen, 2)}
    assert min(gaps.values()) > MIN_DELTA_E, gaps


def test_the_old_orange_pair_would_fail():
    # vermillion and orange, the bands that both read as orange: the test tells them apart from a good pair
    deut = MACHADO["deuteranopia"]
    assert np.linalg.norm(lab(deut @ linear("#D55E00")) - lab(deut @ linear("#E69F00"))) < MIN_DELTA_E


@pytest.mark.parametrize("name", sorted(BAND_COLOURS))
def test_band_fills_reach_3_to_1_on_white(name):
    assert contrast(BAND_COLOURS[name], "#ffffff") >= 3.0
