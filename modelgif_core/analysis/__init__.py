"""Questions answered with fields: IP triage (calibration, output probes, reports) and unlearning checks."""
