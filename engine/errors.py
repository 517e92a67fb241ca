"""The one exception type whose message is shown to users as-is (UI and CLI)."""


class SubnetScopeError(Exception):
    """An expected failure caused by input or environment; its message is one readable sentence."""
