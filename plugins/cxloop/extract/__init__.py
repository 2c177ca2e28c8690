"""Extract: everything that reads a source system and lands what it read.

Owns the HTTP layer (retries, rate limits, size limits), the connectors (Qualtrics, Salesforce,
HubSpot, file drops), the landing format (immutable Parquet batches of text values), the
incremental windows and watermarks of each source, and pseudonymisation of e-mail addresses at
the door.

May import: ``cxloop.config``, ``cxloop.contract``, ``cxloop.source_config``, ``cxloop.gate``
(outcome types a file drop relabels) and ``cxloop.store`` (watermarks). Never ``cxloop.pipeline``,
``cxloop.transform`` or ``cxloop.serve``.
"""
