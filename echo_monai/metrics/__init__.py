from __future__ import annotations

# Offline evaluation suite: distribution metrics on pluggable encoders, diversity, reconstruction and perceptual
# distances, memorisation audit, downstream-utility evaluators and the report writer. Nothing here downloads weights.
from echo_monai.metrics.distribution import distribution_metrics
from echo_monai.metrics.diversity import feature_diversity, ms_ssim_diversity, ms_ssim_settings
from echo_monai.metrics.downstream import (
    CAMUS_STRUCTURES,
    ClassificationEvaluator,
    DownstreamEvaluator,
    EjectionFractionEvaluator,
    ImageClassificationEvaluator,
    KeyedPrepareBatch,
    ScaledRegressor,
    SegmentationEvaluator,
    TrainingMix,
    VideoClassificationEvaluator,
    classification_metrics,
    regression_metrics,
    structure_dice,
    training_set,
)
from echo_monai.metrics.encoders import (
    FeatureEncoder,
    InputKind,
    NetworkEncoder,
    TorchScriptEncoder,
    i3d_encoder,
    inception_v3_encoder,
    metric_name,
    resnet10,
    resnet_encoder,
)
from echo_monai.metrics.figures import bar_chart, sample_grid, scatter_plot, write_png
from echo_monai.metrics.frechet import frechet_distance, gaussian_frechet_distance
from echo_monai.metrics.kernel import kernel_distance, polynomial_mmd_unbiased
from echo_monai.metrics.perceptual import PerceptualDistance
from echo_monai.metrics.prdc import nearest_neighbour_radii, prdc
from echo_monai.metrics.privacy import (
    MemorisationAudit,
    MemorisationResult,
    PrivacyGate,
    nearest_neighbour_similarity,
    privacy_filter,
)
from echo_monai.metrics.reconstruction import reconstruction_metrics
from echo_monai.metrics.report import markdown_tables, to_json_compatible, write_report
from echo_monai.metrics.statistics import RunSummary, paired_difference, summarise_runs

__all__ = [
    "CAMUS_STRUCTURES",
    "ClassificationEvaluator",
    "DownstreamEvaluator",
    "EjectionFractionEvaluator",
    "FeatureEncoder",
    "ImageClassificationEvaluator",
    "InputKind",
    "KeyedPrepareBatch",
    "MemorisationAudit",
    "PrivacyGate",
    "RunSummary",
    "MemorisationResult",
    "NetworkEncoder",
    "PerceptualDistance",
    "ScaledRegressor",
    "SegmentationEvaluator",
    "TorchScriptEncoder",
    "TrainingMix",
    "VideoClassificationEvaluator",
    "bar_chart",
    "classification_metrics",
    "distribution_metrics",
    "feature_diversity",
    "frechet_distance",
    "gaussian_frechet_distance",
    "i3d_encoder",
    "inception_v3_encoder",
    "kernel_distance",
    "markdown_tables",
    "metric_name",
    "ms_ssim_diversity",
    "ms_ssim_settings",
    "nearest_neighbour_radii",
    "nearest_neighbour_similarity",
    "paired_difference",
    "polynomial_mmd_unbiased",
    "prdc",
    "privacy_filter",
    "reconstruction_metrics",
    "regression_metrics",
    "resnet10",
    "resnet_encoder",
    "sample_grid",
    "scatter_plot",
    "structure_dice",
    "summarise_runs",
    "to_json_compatible",
    "training_set",
    "write_png",
    "write_report",
]
