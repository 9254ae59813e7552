"""Ingest: many sources, file kinds and chat formats → canonical records + quarantine."""

from tuneline.stages.ingest.run import IngestError, IngestResult, run_ingest

__all__ = ["IngestError", "IngestResult", "run_ingest"]
