"""Ingest, acceptance, qualification, state reading and verify, over the ports in :mod:`.ports`."""
