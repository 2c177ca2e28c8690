{#- cxloop's source freshness (`dbt source freshness`, run by the pipeline before each build):
    as_of-relative, never the wall clock, so a rerun of the same inputs and as_of gives the
    same statuses (docs/metric-decisions.md, "Source freshness").

    It overrides dbt's collect_freshness for this project. For a landed entity (a table of
    raw.extraction_windows' entity column):
    - max_loaded_at: the end of the newest data window the entity has been loaded up to (the
      as_of of the batch that last loaded it), the data-time twin of the wall-clock _loaded_at;
    - snapshotted_at: the later of the run's as_of (raw.cx_run_control, or the as_of var) and
      the newest window any entity has been loaded up to, so an entity that lags the others
      shows its lag even when the run's as_of is the warehouse's own (the earliest window).
    dbt computes age = snapshotted_at - max_loaded_at and the status from the source's
    warn_after / error_after (program settings freshness_warn_hours / freshness_error_hours).
    An entity never loaded has no window: max_loaded_at is null, which dbt reports as an error.
    loaded_at_field and filter are not read: the window, not a row column, is the measure. -#}
{% macro collect_freshness(source, loaded_at_field, filter) %}
    {% call statement('collect_freshness', fetch_result=True, auto_begin=False) -%}
        {{ cxloop_freshness_sql(source.identifier) }}
    {%- endcall %}
    {{ return(load_result('collect_freshness')) }}
{% endmacro %}

{% macro cxloop_freshness_sql(entity) -%}
    {%- set as_of = cxloop_as_of(var('as_of', none)) -%}
    with windows as (
        select
            entity,
            max(as_of) as window_end
        from raw.extraction_windows
        group by entity
    ),

    newest as (
        select max(window_end) as window_end from windows
    )

    select
        this_entity.window_end as max_loaded_at,
        greatest({{ as_of }}, coalesce(newest.window_end, {{ as_of }})) as snapshotted_at
    from newest
    left join windows as this_entity
        on this_entity.entity = '{{ entity | replace("'", "''") }}'
{%- endmacro %}

{#- on-run-start: raw.source_freshness exists for every run (the source of stg_pipeline__source_freshness),
    also a bare `dbt build` that no freshness run came before. The same table as
    cxloop.transform.dbt.FRESHNESS_DDL. -#}
{% macro cxloop_ensure_source_freshness() -%}
    {#- only in cxloop's own project: a host project that installs the package keeps its
        raw database as it is (stg_pipeline__source_freshness reads nothing without the table) -#}
    {%- if project_name != 'cxloop' %}select 1{% else -%}
    create schema if not exists raw;
    create table if not exists raw.source_freshness (
        as_of timestamp not null,
        source_name varchar not null,
        table_name varchar not null,
        source_system varchar,
        batch_id varchar,
        status varchar not null,
        loaded_up_to timestamp,
        reference_at timestamp,
        age_hours double precision,
        warn_after_hours integer,
        error_after_hours integer,
        invocation_id varchar,
        recorded_at timestamp not null
    )
    {%- endif %}
{%- endmacro %}

{#- raw.source_freshness's rows: the table exists in cxloop's own warehouse (the on-run-start
    hook above creates it); a host project that installs the package has none, and then there
    are no freshness rows (the same columns, no row). -#}
{% macro cxloop_recorded_freshness(relation) -%}
    {%- if (not execute) or project_name == 'cxloop'
        or adapter.get_relation(relation.database, relation.schema, relation.identifier) is not none -%}
        select * from {{ relation }}
    {%- else -%}
        select
            cast(null as timestamp) as as_of, cast(null as {{ cxloop_type('text') }}) as source_name,
            cast(null as {{ cxloop_type('text') }}) as table_name, cast(null as {{ cxloop_type('text') }}) as source_system,
            cast(null as {{ cxloop_type('text') }}) as batch_id, cast(null as {{ cxloop_type('text') }}) as status,
            cast(null as timestamp) as loaded_up_to, cast(null as timestamp) as reference_at,
            cast(null as {{ cxloop_type('float8') }}) as age_hours, cast(null as integer) as warn_after_hours,
            cast(null as integer) as error_after_hours
        where 1 = 0
    {%- endif -%}
{%- endmacro %}
