"""Evaluation metrics: mode coverage on 2D mixtures, classifier-based scores on digits, Frechet distance."""

from .digits import CLASSIFIER_VERSION, DigitsClassifier, digits_classifier, digits_metrics
from .frechet import frechet_distance, gaussian_stats
from .modes import default_min_count, mode_metrics

__all__ = ["CLASSIFIER_VERSION", "DigitsClassifier", "default_min_count", "digits_classifier", "digits_metrics",
           "frechet_distance", "gaussian_stats", "mode_metrics"]
