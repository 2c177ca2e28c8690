"""adapter.dispatch for the lint: the default__ implementation (DuckDB) of a project macro."""

from jinja2 import pass_context


@pass_context
def dispatch(context, macro_name, macro_namespace=None):
    return context["default__" + macro_name]


def quote(identifier):
    return f'"{identifier}"'
