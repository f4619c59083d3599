"""Plotly figures: pure functions of numpy arrays, shared by the app and the CLI's exports."""
