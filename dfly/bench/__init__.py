"""`dfly bench`: many simulated peers in one process against a running supernode."""
