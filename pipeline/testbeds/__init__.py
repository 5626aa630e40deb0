"""Stand-ins the tests and benchmarks run against, imported by no stage: synthetic embedding worlds
with a known answer, random-weight CLIPs, a headless browser.

A room's `__init__.py` holds only this docstring (tests/test_dvc_deps.py): importing a room runs nothing."""
