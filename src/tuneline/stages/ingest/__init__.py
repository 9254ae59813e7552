"""Ingest: many sources, file kinds and chat formats → canonical records + quarantine."""

from tuneline.stages.ingest.run import IngestError, run_ingest

__all__ = ["IngestError", "run_ingest"]
