"""The background worker that owns the device, and the tasks it runs for the app."""
