"""Ingestion: every event is accepted, a duplicate, or rejected with a reason.

:mod:`.pipeline` batches the input and appends each batch in a writer thread, :mod:`.checker` decides each
batch, :mod:`.cache` holds what the ingestor knows of each stream.
"""

from timeline.application.ingest.cache import Rules
from timeline.application.ingest.pipeline import Clock, Ingestor, utcnow
from timeline.application.ingest.versions import VersionsInForce

__all__ = ["Clock", "Ingestor", "Rules", "VersionsInForce", "utcnow"]
