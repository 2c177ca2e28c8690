"""Gate: every landed batch passes here before anything reaches the warehouse.

Owns the Great Expectations suites (one per entity, a severity per expectation), coercion of
landed text to the contract's types, the structural and row-level checks, row-level quarantine
with a reason naming file, row and field, reconciliation (received = loaded + quarantined),
quarantine release when a late parent arrives, reading landed batches, and the HTML data docs.

Modules: ``validation`` (Gate, validate_batch), ``outcome`` (ValidationOutcome, errors, check
names), ``suites`` (expectations/*.json, GX suites and context), ``coerce`` (types), ``messages``
(bounded values in reasons and record_json), ``data_docs`` (HTML), ``landed`` (landed Parquet),
``release`` (quarantine release).

May import: ``cxloop.config``, ``cxloop.contract``, ``cxloop.store`` (the stored-key lookup and the
bookkeeping tables' layout). Never ``cxloop.extract``, ``cxloop.transform``, ``cxloop.serve`` or
``cxloop.pipeline``.
"""
