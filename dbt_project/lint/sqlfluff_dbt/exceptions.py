"""dbt's exceptions namespace for the lint."""


def raise_compiler_error(message):
    raise RuntimeError(message)
