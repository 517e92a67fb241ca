"""The neurons area's names without numpy or pandas: the demo registry and job kinds read them."""

KIND = "neurons.activations"
DEMO_ACTIVATIONS = {"model": "demo", "dataset": "demo-general"}  # engine/demo/registry.py
