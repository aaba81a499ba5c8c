from __future__ import annotations

from .dpm_solver import DPMSolverPredictionType, DPMSolverScheduler, DPMSolverTimestepSpacing

__all__ = ["DPMSolverPredictionType", "DPMSolverScheduler", "DPMSolverTimestepSpacing"]
