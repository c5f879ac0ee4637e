"""unidesk-tui: desired-state deploy reconciler for UniDesk."""

__version__ = "0.1.0"
