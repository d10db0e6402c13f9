"""Data: source → tokenizer → token store (memmap) → fixed train/val windows."""
