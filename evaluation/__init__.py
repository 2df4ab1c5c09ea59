"""Evaluation of saved models: the test action, BLiMP, fine-tuning, the learning curve, the report."""
