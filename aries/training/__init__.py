"""Stage 3, train: the training settings, TRL's DPOTrainer and SFTTrainer driven for both views,
the aries losses, prefix-shared pair batches, checkpoints a killed run resumes from, and momentum.

Imports `aries.core`.
"""
