"""Measurements behind the recorded numbers (`modelgif bench ...`); the app's answers never depend on them."""
