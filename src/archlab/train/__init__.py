"""Training: loss, optimizer and schedule, the LightningModule, and the run entry point."""
