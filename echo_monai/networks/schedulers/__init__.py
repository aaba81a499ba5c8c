from __future__ import annotations

from .consistency import ConsistencyScheduler
from .ddim import DDIMScheduler
from .dpm_solver import DPMSolverPredictionType, DPMSolverScheduler, DPMSolverTimestepSpacing

__all__ = [
    "ConsistencyScheduler",
    "DDIMScheduler",
    "DPMSolverPredictionType",
    "DPMSolverScheduler",
    "DPMSolverTimestepSpacing",
]
