"""Training: loss, optimizer and schedule, the LightningModule, and the run entry point."""

from archlab.startup import install

install()  # before any module here imports Lightning (and it torchmetrics): archlab/startup.py
