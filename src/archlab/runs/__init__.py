"""Run records: reading them (load, wandb_source) and comparing them (compare, report)."""
