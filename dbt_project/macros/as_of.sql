{#- The run's as-of time: the exclusive end of its data window and the "now" of every
    metric (never the wall clock, so a rerun gives the same answer).
    Models call it as {{ cxloop_as_of(var('as_of', none)) }} (the var referenced in the model
    itself, so unit tests can override it). The run fails with a clear message when the var is
    missing or not an ISO-8601 timestamp. A value with a zone offset is converted to UTC and
    the zone dropped (the warehouse stores UTC without zone). -#}
{% macro cxloop_as_of(value) -%}
    {%- set iso = '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?$' -%}
    {%- if value is none or (value | string | trim) == '' -%}
        {%- if execute -%}
            {{ exceptions.raise_compiler_error(
                "cxloop: the dbt var `as_of` is required (ISO timestamp in UTC, the exclusive end "
                ~ "of the data window), e.g. --vars '{as_of: \"2026-10-01T00:00:00\"}'") }}
        {%- endif -%}
        {{ return("cast('1970-01-01 00:00:00' as timestamp)") }}
    {%- endif -%}
    {%- set text = value | string | trim -%}
    {%- if not modules.re.match(iso, text) -%}
        {{ exceptions.raise_compiler_error(
            "cxloop: var `as_of` = '" ~ text ~ "' is not an ISO-8601 timestamp (YYYY-MM-DDTHH:MM:SS)") }}
    {%- endif -%}
    {%- set dt = modules.datetime.datetime.fromisoformat(text) -%}
    {%- if dt.tzinfo is not none -%}
        {%- set dt = dt.astimezone(modules.pytz.utc).replace(tzinfo=none) -%}
    {%- endif -%}
    cast('{{ dt.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}
