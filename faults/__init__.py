"""The fault and abuse suite: what was tried against the workspace, and what happened."""
