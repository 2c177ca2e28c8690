"""Serve: what people open. The read-only BI snapshot, the governance exports (no PII, small
groups suppressed, checksummed manifest), the governance pack pages, the offline HTML report and
the run summary, all read from the marts. ``steps`` holds the pipeline's serving steps (the pipeline calls them in one
line each); targets, thresholds and headline numbers come from the marts and the dbt project,
never from literals here; nothing written or logged carries a credential (``config.redact``).

May import: ``cxloop.config``, ``cxloop.contract``, ``cxloop.store``. Never ``cxloop.extract``,
``cxloop.gate``, ``cxloop.transform`` or ``cxloop.pipeline``.
"""
