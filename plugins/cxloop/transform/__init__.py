"""Transform: the dbt project (staging, intermediate, marts) run in-process, with every node's
result logged and kept in ``raw.dbt_results``.

May import: ``cxloop.config``, ``cxloop.contract``, ``cxloop.store``. Never ``cxloop.extract``,
``cxloop.gate``, ``cxloop.serve`` or ``cxloop.pipeline``.
"""
