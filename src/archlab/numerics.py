"""The numerics version: bumped by every change that alters training results.

A run records it in its provenance. Runs of different numerics versions are never pooled: a
change of initialisation order, a fused layer or a new loss computation makes earlier runs
incomparable, even where the config is identical. A pure refactor that keeps results bitwise
identical does not bump it.

History:
1. the first released model and training loop (separate q/k/v projections).
2. fused projections (issue #16): one q/k/v GEMM per layer and one up/gate GEMM per gated
   MLP. The initial weights are v1's, concatenated (same draws, same order), but the fused
   GEMMs sum in another order (the input gradient is one GEMM instead of three added), so
   training drifts apart in the last bits; GQA/MQA through SDPA's ``enable_gqa``. Keys no
   longer depend on model/block (v1 checkpoints still load, see model/migrate.py, but runs
   never resume across the change).
3. the default validation set grew from 32 to 256 windows (``data.val_windows``) and the val
   loss is the mean of per-window means (its standard error is recorded): recorded val losses
   move; the long-context evaluation scores the same tokens with full and cut context.
"""

NUMERICS_VERSION = 3
