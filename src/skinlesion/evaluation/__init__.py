"""Pure metric functions, thresholds, confidence intervals, reports."""
