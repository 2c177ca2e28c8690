"""adapter.dispatch for the lint: the duckdb__ implementation of a project macro, else its default__."""

from jinja2 import pass_context


@pass_context
def dispatch(context, macro_name, macro_namespace=None):
    return context.get("duckdb__" + macro_name) or context["default__" + macro_name]


def quote(identifier):
    return f'"{identifier}"'
