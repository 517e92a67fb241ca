"""Side-by-side benchmarks: each target is a ratio against a baseline measured in the same run."""
