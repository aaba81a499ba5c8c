"""``simulate``: write a synthetic dataset in one of the public layouts, from the phantom simulator.

Every subject ``i`` draws its parameters and speckle from ``numpy.random.default_rng([seed, i])``, so a run is
deterministic for a seed and subject ``i`` does not depend on ``n``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from echo_monai.data.phantom.breast import BreastParameters, BreastPhantom
from echo_monai.data.phantom.busi_writer import BUSIWriter
from echo_monai.data.phantom.busv_writer import BUSVWriter
from echo_monai.data.phantom.camus_writer import CAMUSWriter
from echo_monai.data.phantom.cardiac import CardiacPhantom, CardiacSequence
from echo_monai.data.phantom.cardiac_shape import CardiacParameters
from echo_monai.data.phantom.dicom_writer import DicomCineWriter
from echo_monai.data.phantom.echonet_writer import EchoNetDynamicWriter
from echo_monai.data.phantom.pediatric_writer import EchoNetPediatricWriter

__all__ = ["CAMUS_VARIABILITIES", "KINDS", "MIN_SUBJECTS", "simulate", "split_plan"]


def _subject_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index)])


def _subject_name(rng: np.random.Generator, prefix: str) -> str:
    return f"{prefix}{int(rng.integers(0, 2**63)):016X}"


def split_plan(pattern: tuple[str, ...], n: int) -> list[str]:
    """The split of each of ``n`` subjects: ``pattern[i % len(pattern)]``, except that when ``n`` is smaller than the
    pattern the last subjects take the splits the first ``n`` would miss (so every split is present as soon as ``n``
    allows it; subject ``i``'s parameters never depend on ``n``, its split may).

    Example:
        >>> split_plan(("TRAIN",) * 6 + ("VAL", "TEST"), 4)
        ['TRAIN', 'TRAIN', 'VAL', 'TEST']
    """
    splits = [pattern[i % len(pattern)] for i in range(n)]
    missing = [s for s in dict.fromkeys(pattern) if s not in splits]
    if missing and n > len(missing):
        splits[n - len(missing) :] = missing
    return splits


#: the smallest n with every split of a kind present
MIN_SUBJECTS = {"echonet": 3, "camus": 3, "busv": 2}


def _cardiac(
    params: CardiacParameters, image_size: tuple[int, int], n_frames: int | None, seed: int
) -> CardiacSequence:
    """Render a loop long enough to hold the first ED and ES frames."""
    need = params.ed_offset_frames + params.systole_frames + 1
    return CardiacPhantom(params, image_size, seed=seed).simulate(max(need, n_frames or 0) if n_frames else None)


def _echonet(out: Path, n: int, seed: int, image_size=(112, 112), n_frames: int | None = 64) -> Path:
    splits = split_plan(("TRAIN",) * 6 + ("VAL", "TEST"), n)
    with EchoNetDynamicWriter(out) as writer:
        for i in range(n):
            rng = _subject_rng(seed, i)
            name = _subject_name(rng, "0X")
            params = CardiacParameters.sample(rng, view="4CH")
            writer.add(_cardiac(params, image_size, n_frames, seed=int(rng.integers(2**31))), name, splits[i])
    return out


def _pediatric(out: Path, n: int, seed: int, image_size=(112, 112), n_frames: int | None = 64) -> Path:
    with EchoNetPediatricWriter(out) as writer:
        for i in range(n):
            rng = _subject_rng(seed, i)
            name = f"CR{int(rng.integers(0, 2**31)):08x}-{i + 1:06d}"
            age = float(np.round(rng.uniform(0.5, 18.0), 1))
            height = float(np.clip(50.0 + 6.5 * age + rng.normal(0, 6), 50, 190))
            weight = float(np.round(rng.uniform(14.0, 22.0) * (height / 100.0) ** 2, 1))
            sex, fold = str(rng.choice(["M", "F"])), i % 10
            params = CardiacParameters.sample(rng, view="4CH", pediatric=True)
            for view in ("4CH", "PSAX"):
                view_params = CardiacParameters(**{**params.to_dict(), "view": view})
                if view == "PSAX":
                    view_params = CardiacParameters(
                        **{**view_params.to_dict(), "apex_depth_mm": 0.45 * params.depth_mm, "apex_lateral_mm": 0.0}
                    )
                sequence = _cardiac(view_params, image_size, n_frames, seed=int(rng.integers(2**31)))
                writer.add(sequence, name, fold=fold, sex=sex, age=age, weight=weight, height=height)
    return out


#: CAMUS phantom variabilities: ``standard`` (the demo's) and ``hard`` (more shape, pose and intensity variability)
CAMUS_VARIABILITIES = ("standard", "hard")


def _hard_heart(rng: np.random.Generator) -> dict[str, float]:
    """Per-patient overrides of the ``hard`` CAMUS phantom: irregular shapes, strong gain and attenuation changes,
    low-contrast and dropped-out walls, bright blood (the right heart is there in every 4CH view, unlabelled)."""
    aspect_ed = float(rng.uniform(2.6, 4.2))
    return {
        "aspect_ed": aspect_ed,
        "aspect_es": aspect_ed * float(rng.uniform(1.04, 1.3)),
        "taper": float(rng.uniform(0.52, 0.76)),
        "atrium_scale": float(rng.uniform(0.65, 1.4)),
        "wall_ed_mm": float(rng.uniform(5.0, 12.0)),
        "gain_db": float(rng.uniform(-10.0, 8.0)),
        "tgc_compensation": float(rng.uniform(0.65, 1.05)),
        "dynamic_range_db": float(rng.uniform(42.0, 62.0)),
        "noise_db": float(rng.uniform(-76.0, -60.0)),
        "myocardium_echo": float(rng.uniform(0.4, 1.0)),
        "tissue_echo": float(rng.uniform(0.2, 0.6)),
        "blood_echo": float(rng.uniform(0.004, 0.03)),
        "wall_dropout": 0.0 if rng.random() < 0.3 else float(rng.uniform(0.3, 0.9)),
    }


def _camus_pose(rng: np.random.Generator, params: CardiacParameters, view: str, hard: bool) -> CardiacParameters:
    """The view's parameters with a per-view probe pose; ``hard`` rotates the heart further (-14 to 22 degrees) and
    shrinks the pose towards the centre until the heart fits the sector."""
    if not hard:
        pose = {"tilt_deg": float(rng.uniform(-4.0, 10.0)), "apex_lateral_mm": float(rng.uniform(-4.0, 6.0))}
        return CardiacParameters(**{**params.to_dict(), "view": view, **pose})
    pose = {"tilt_deg": float(rng.uniform(-14.0, 22.0)), "apex_lateral_mm": float(rng.uniform(-10.0, 12.0))}
    for _ in range(20):
        view_params = CardiacParameters(**{**params.to_dict(), "view": view, **pose})
        if view_params.fits_sector():
            break
        pose = {key: 0.8 * value for key, value in pose.items()}
    return view_params


def _camus(out: Path, n: int, seed: int, image_size=(256, 256), variability: str = "standard") -> Path:
    if variability not in CAMUS_VARIABILITIES:
        raise ValueError(f"simulate: variability must be one of {list(CAMUS_VARIABILITIES)}, got {variability!r}.")
    hard = variability == "hard"
    splits = split_plan(("training",) * 8 + ("validation", "testing"), n)
    with CAMUSWriter(out) as writer:
        for i in range(n):
            rng = _subject_rng(seed, i)
            overrides = _hard_heart(np.random.default_rng([int(seed), i, 1])) if hard else {}
            params = CardiacParameters.sample(
                rng, view="4CH", ed_offset_frames=0, fps=float(rng.uniform(18.0, 40.0)), **overrides
            )
            views = {}
            for view in ("2CH", "4CH"):
                view_params = _camus_pose(rng, params, view, hard)
                views[view] = _cardiac(view_params, image_size, 1, seed=int(rng.integers(2**31)))
            writer.add(
                f"patient{i + 1:04d}",
                views,
                split=splits[i],
                sex=str(rng.choice(["M", "F"])),
                age=int(rng.integers(20, 90)),
                image_quality=str(rng.choice(["Good", "Medium", "Poor"])),
                ejection_fraction=params.ejection_fraction,
            )
    return out


def _busi(out: Path, n: int, seed: int, image_size=(128, 160)) -> Path:
    writer = BUSIWriter(out)
    for i in range(n):
        rng = _subject_rng(seed, i)
        label = ("benign", "malignant", "normal")[i % 3]
        lesions = 2 if label != "normal" and rng.random() < 0.1 else 1
        params = BreastParameters.sample(rng, label, n_lesions=lesions, motion="none", motion_amplitude=0.0)
        writer.add(BreastPhantom(params, image_size, seed=int(rng.integers(2**31))).simulate(1))
    return out


def _busv(out: Path, n: int, seed: int, image_size=(128, 160), n_frames: int = 16) -> Path:
    splits = split_plan(("train",) * 4 + ("val",), n)
    with BUSVWriter(out) as writer:
        for i in range(n):
            rng = _subject_rng(seed, i)
            name = f"{int(rng.integers(0, 2**63)):016x}"
            params = BreastParameters.sample(rng, ("benign", "malignant")[i % 2])
            video = BreastPhantom(params, image_size, seed=int(rng.integers(2**31))).simulate(n_frames)
            writer.add(video, name, split=splits[i])
    return out


def _dicom(out: Path, n: int, seed: int, image_size=(128, 128), n_frames: int | None = 32) -> Path:
    writer = DicomCineWriter(out, uid_seed=seed)
    for i in range(n):
        rng = _subject_rng(seed, i)
        params = CardiacParameters.sample(rng, view=("4CH", "2CH")[i % 2])
        sequence = _cardiac(params, image_size, n_frames, seed=int(rng.integers(2**31)))
        writer.add(
            sequence.frames,
            f"cine_{i + 1:04d}",
            sequence.fps,
            sequence.pixel_spacing_mm,
            patient_id=f"SIM{seed:04d}{i + 1:04d}",
            description=f"Simulated apical {params.view}",
        )
    return out


KINDS: dict[str, Callable[..., Path]] = {
    "echonet": _echonet,
    "pediatric": _pediatric,
    "camus": _camus,
    "busi": _busi,
    "busv": _busv,
    "dicom": _dicom,
}


def simulate(kind: str, out: str | os.PathLike, n: int = 8, seed: int = 0, **options: Any) -> Path:
    """Write ``n`` simulated subjects in the on-disk layout of a public dataset.

    Args:
        kind: ``"echonet"``, ``"pediatric"``, ``"camus"``, ``"busi"``, ``"busv"`` or ``"dicom"``.
        out: dataset folder (created; existing files of the same names are replaced).
        n: number of subjects (videos, patients or images); every split of the layout is present from
            :data:`MIN_SUBJECTS` on (see :func:`split_plan`).
        seed: base seed; subject ``i`` uses ``numpy.random.default_rng([seed, i])``.
        options: per kind, ``image_size`` ``(H, W)``; for video kinds ``n_frames``; for ``camus``
            ``variability`` (``"standard"`` or ``"hard"``, see :data:`CAMUS_VARIABILITIES`).

    Returns:
        The dataset root, ready for the matching reader in :mod:`echo_monai.data`.

    Example:
        >>> root = simulate("camus", "CAMUS_sim", n=4, seed=0, image_size=(128, 128))
    """
    if kind not in KINDS:
        raise ValueError(f"simulate: kind must be one of {sorted(KINDS)}, got {kind!r}.")
    if int(n) < 1:
        raise ValueError(f"simulate: n must be >= 1, got {n}.")
    function = KINDS[kind]
    allowed = list(inspect.signature(function).parameters)[3:]  # after (out, n, seed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"simulate: option(s) {unknown} are not valid for kind {kind!r}; allowed: {list(allowed)}.")
    if "image_size" in options:
        options["image_size"] = tuple(int(v) for v in options["image_size"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return function(out, int(n), int(seed), **options)
