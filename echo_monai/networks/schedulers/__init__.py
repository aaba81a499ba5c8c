from __future__ import annotations

from .ddim import DDIMScheduler
from .dpm_solver import DPMSolverPredictionType, DPMSolverScheduler, DPMSolverTimestepSpacing

__all__ = ["DDIMScheduler", "DPMSolverPredictionType", "DPMSolverScheduler", "DPMSolverTimestepSpacing"]
