"""Serve: what people open. The read-only BI snapshot, the governance exports (no PII, small
groups suppressed, checksummed manifest), the offline HTML report and the run summary, all
read from the marts.

May import: ``cxloop.config``, ``cxloop.contract``, ``cxloop.store``. Never ``cxloop.extract``,
``cxloop.gate``, ``cxloop.transform`` or ``cxloop.pipeline``.
"""
