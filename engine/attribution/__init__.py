"""Attribution: LRP (LXT) and Wanda scores, differential selection, pruning, evaluation (SparC3)."""
