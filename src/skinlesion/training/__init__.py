"""Training: LightningModule, two-phase fit, run-dir artifacts."""
