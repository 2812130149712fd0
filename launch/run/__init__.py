"""What a run is, whichever way it is launched: the checked flags (setup.py), model selection on
validation and the one final test (selection.py), how a run stops (limits.py), its checkpoints,
its records (recorder.py), its progress line and report (progress.py) and summary.json
(summary.py). The two drivers, launch/distributed/ and launch/anakin/, report to it; it imports
neither."""
