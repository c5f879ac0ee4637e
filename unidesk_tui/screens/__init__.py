"""The console's screens: one screen per module."""
