"""`dfly setup`: point containerd, Docker or podman at the local daemon.

runtimes.py holds the pure transforms, writer.py the file writes, app.py the wiring."""
