"""Helpers shared by the tests: backends, instants, ids, waiting, and the ``Branch`` view of a store."""
