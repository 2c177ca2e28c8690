{#- Spark SQL (dbt-spark) spellings of cxloop's dispatched macros: built and tested on Spark 4
    in local mode (session method), tests/integration/test_dbt_package_spark.py (make test-spark).
    The session must run with spark.sql.session.timeZone=UTC: `timestamp` is Spark's
    TIMESTAMP_LTZ, which is read and written in the session zone. -#}

{#- Spark has neither text nor float8 -#}
{% macro spark__cxloop_type(name) -%}
    {{ return({'text': 'string', 'float8': 'double'}.get(name, name)) }}
{%- endmacro %}

{% macro spark__cxloop_period_start(ts, grain) -%}
    cast(date_trunc('{{ grain }}', {{ ts }}) as date)
{%- endmacro %}

{% macro spark__cxloop_shift_period(period_start, n) -%}
    add_months(cast({{ period_start }} as date), cast(({{ n }}) * {{ cxloop_period_months() }} as int))
{%- endmacro %}

{#- sequence() of dates with a year-month interval step, one row each (explode) -#}
{% macro spark__cxloop_period_series(first_start, last_start) -%}
    select explode(sequence(
        cast({{ first_start }} as date),
        cast({{ last_start }} as date),
        make_ym_interval(0, {{ cxloop_period_months() }})
    )) as period_start
{%- endmacro %}

{% macro spark__cxloop_day_series(first_date, last_date) -%}
    select explode(sequence(
        cast({{ first_date }} as date),
        cast({{ last_date }} as date),
        make_dt_interval(1)
    )) as calendar_date
{%- endmacro %}

{% macro spark__cxloop_just_before(ts) -%}
    timestampadd(MICROSECOND, -1, {{ ts }})
{%- endmacro %}

{% macro spark__cxloop_add_days(ts, days) -%}
    timestampadd(DAY, cast({{ days }} as int), {{ ts }})
{%- endmacro %}

{% macro spark__cxloop_add_hours(ts, hours) -%}
    timestampadd(MICROSECOND, cast(round(cast({{ hours }} as double) * 3600000000) as bigint), {{ ts }})
{%- endmacro %}

{% macro spark__cxloop_hours_between(start_ts, end_ts) -%}
    (cast(timestampdiff(MICROSECOND, {{ start_ts }}, {{ end_ts }}) as double) / 3600000000.0)
{%- endmacro %}

{#- weekday(): 0 = Monday ... 6 = Sunday -#}
{% macro spark__cxloop_iso_day_of_week(ts) -%}
    cast(weekday({{ ts }}) + 1 as int)
{%- endmacro %}

{#- Spark's concat_ws skips nulls (and gives '' when all are null), like DuckDB's -#}
{% macro spark__cxloop_concat_ws(separator, expressions) -%}
    concat_ws({{ separator }}, {{ expressions | join(', ') }})
{%- endmacro %}

{#- Spark's round(double, n) rounds the double's decimal expansion half-up (BigDecimal); the
    arithmetic of DuckDB's round(double, n) spelled out instead, so that both give one double -#}
{% macro spark__cxloop_round(expr, digits=9) -%}
    {%- set scaled = '(cast(' ~ expr ~ ' as double) * 1e' ~ digits ~ ')' -%}
    (case
        when abs({{ scaled }}) < 4503599627370496.0
            then sign({{ scaled }}) * floor(abs({{ scaled }}) + 0.5)
        else {{ scaled }}
    end / 1e{{ digits }})
{%- endmacro %}

{#- The table format of cxloop's tables on Spark (var cxloop_spark_table_format, default parquet,
    dbt-spark's default file_format). merge (incremental models) and snapshots need delta,
    iceberg or hudi: dbt-spark refuses both on parquet. -#}
{% macro cxloop_spark_has_merge() -%}
    {{ return(var('cxloop_spark_table_format', 'parquet') in ['delta', 'iceberg', 'hudi']) }}
{%- endmacro %}

{#- materialized= of the incremental base models: merge on unique_key needs a table format with
    MERGE; on Spark parquet they are tables, rebuilt in full by each run (the same rows: an
    incremental run merges exactly the rows a full build reads) -#}
{% macro spark__cxloop_incremental_materialization() -%}
    {{ return('incremental' if cxloop_spark_has_merge() else 'table') }}
{%- endmacro %}

{#- The snapshot's rows. Without snapshots (Spark parquet) the current CRM rows, each as the one
    version a first snapshot gives it: dbt_valid_from = updated_at (strategy timestamp), open
    dbt_valid_to. History does not build up across runs then; a time before updated_at reads
    that version anyway (int_*_versions open the first version to -infinity). -#}
{% macro spark__cxloop_crm_versions(snapshot_name, source_table) -%}
    {%- if cxloop_spark_has_merge() -%}
        select * from {{ ref(snapshot_name) }}
    {%- else -%}
        select *, updated_at as dbt_valid_from, cast(null as timestamp) as dbt_valid_to
        from {{ source('crm', source_table) }}
    {%- endif -%}
{%- endmacro %}
