"""The blend methods by name (PEFT's combination types), without torch: the CLI reads them."""

METHODS = (
    "linear",
    "cat",
    "svd",
    "ties",
    "ties_svd",
    "dare_linear",
    "dare_ties",
    "dare_linear_svd",
    "dare_ties_svd",
    "magnitude_prune",
    "magnitude_prune_svd",
)
SVD_METHODS = tuple(m for m in METHODS if m.endswith("svd"))
DENSITY_METHODS = tuple(m for m in METHODS if m not in ("linear", "cat", "svd"))
SIGN_METHODS = ("ties", "ties_svd", "dare_ties", "dare_ties_svd")
ENGINES = ("auto", "peft")
