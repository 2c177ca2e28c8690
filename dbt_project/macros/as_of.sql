{#- The run's as-of time: the exclusive end of its data window and the "now" of every
    metric (never the wall clock, so a rerun gives the same answer).
    Models call it as {{ cxloop_as_of(var('as_of', none)) }} (the var referenced in the model
    itself, so unit tests can override it).

    Where it comes from:
    - the pipeline does not pass as_of as a var: it writes the run's as_of into the one-row
      table raw.cx_run_control just before it invokes dbt (cxloop.transform.dbt), and the models
      read it from there as a scalar subquery. The compiled SQL is then the same for every
      as_of, so dbt keeps its partial parse (partial_parse.msgpack) from one run to the next:
      any change to --vars makes dbt re-parse the whole project (about 6 s).
    - a var given on the command line (--vars '{as_of: "2026-10-01T00:00:00"}'), or by a unit
      test's overrides, wins: it must be an ISO-8601 timestamp; a value with a zone offset is
      converted to UTC and the zone dropped (the warehouse stores UTC without zone).
    cxloop_check_as_of (on-run-start) fails the run with one clear message when neither is
    there. -#}
{% macro cxloop_as_of(value) -%}
    {%- set iso = '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?$' -%}
    {%- if value is none or (value | string | trim) == '' -%}
        {{ return("(select as_of from " ~ cxloop_run_control_relation() ~ ")") }}
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

{#- The one-row table the pipeline writes the run's as_of into (cxloop.transform.dbt.RUN_CONTROL):
    raw.cx_run_control by default; a project that installs cxloop as a package and keeps its
    as_of in a table names it with vars cxloop_run_control_database / _schema / _identifier
    (falling back to cxloop_raw_database / cxloop_raw_schema, docs/dbt-package.md). The database
    is only written out when a var names it, so the pipeline's compiled SQL stays as it was. -#}
{% macro cxloop_run_control_parts() -%}
    {%- set database = var('cxloop_run_control_database', var('cxloop_raw_database', none)) -%}
    {%- set schema = var('cxloop_run_control_schema', var('cxloop_raw_schema', 'raw')) -%}
    {%- set identifier = var('cxloop_run_control_identifier', 'cx_run_control') -%}
    {{ return({'database': database, 'schema': schema, 'identifier': identifier}) }}
{%- endmacro %}

{% macro cxloop_run_control_relation() -%}
    {%- set parts = cxloop_run_control_parts() -%}
    {%- if parts.database is none -%}
        {{ parts.schema }}.{{ parts.identifier }}
    {%- else -%}
        {{ api.Relation.create(database=parts.database, schema=parts.schema, identifier=parts.identifier) }}
    {%- endif -%}
{%- endmacro %}

{#- on-run-start: with no as_of var, the run-control table must hold exactly one row. As a hook of
    an installed package it runs in the host project's invocations too (each of them needs an as_of). -#}
{% macro cxloop_check_as_of() -%}
    {%- if execute and (var('as_of', none) is none or (var('as_of') | string | trim) == '') -%}
        {%- set parts = cxloop_run_control_parts() -%}
        {%- set rel = adapter.get_relation(
            database=parts.database or target.database, schema=parts.schema, identifier=parts.identifier) -%}
        {%- set rows = run_query('select count(*) from ' ~ rel).columns[0].values()[0] if rel is not none else 0 -%}
        {%- if rows != 1 -%}
            {{ exceptions.raise_compiler_error(
                "cxloop: no as_of for this run: " ~ parts.schema ~ "." ~ parts.identifier ~ " holds " ~ rows
                ~ " rows (the pipeline writes one before each dbt invocation); outside the pipeline pass it as a "
                ~ "var, e.g. --vars '{as_of: \"2026-10-01T00:00:00\"}' (ISO timestamp in UTC, the exclusive end "
                ~ "of the data window)") }}
        {%- endif -%}
    {%- endif -%}
    select 1
{%- endmacro %}
