{#- Reporting periods (var period_grain: quarter | month). period_start is a DATE. -#}

{% macro cxloop_period_grain() -%}
    {%- set grain = var('period_grain', 'quarter') | string | lower -%}
    {%- if grain not in ['quarter', 'month'] -%}
        {{ exceptions.raise_compiler_error("cxloop: var `period_grain` must be 'quarter' or 'month', got '" ~ grain ~ "'") }}
    {%- endif -%}
    {{ return(grain) }}
{%- endmacro %}

{% macro cxloop_period_months() -%}
    {{ return(3 if cxloop_period_grain() == 'quarter' else 1) }}
{%- endmacro %}

{#- first day of the period containing a timestamp/date expression (grain: var period_grain,
    or 'quarter' / 'month' given) -#}
{% macro cxloop_period_start(ts, grain=none) -%}
    {{ return(adapter.dispatch('cxloop_period_start', 'cxloop')(ts, grain or cxloop_period_grain())) }}
{%- endmacro %}

{#- any other adapter: dbt's cross-database date_trunc -#}
{% macro default__cxloop_period_start(ts, grain) -%}
    cast({{ dbt.date_trunc(grain, ts) }} as date)
{%- endmacro %}

{% macro duckdb__cxloop_period_start(ts, grain) -%}
    cast(date_trunc('{{ grain }}', {{ ts }}) as date)
{%- endmacro %}

{% macro postgres__cxloop_period_start(ts, grain) -%}
    cast(date_trunc('{{ grain }}', cast({{ ts }} as timestamp)) as date)
{%- endmacro %}

{#- the period start `n` periods after (n < 0: before) a period_start date -#}
{% macro cxloop_shift_period(period_start, n) -%}
    {{ return(adapter.dispatch('cxloop_shift_period', 'cxloop')(period_start, n)) }}
{%- endmacro %}

{% macro default__cxloop_shift_period(period_start, n) -%}
    cast({{ dbt.dateadd('month', '(' ~ n ~ ') * ' ~ cxloop_period_months(), period_start) }} as date)
{%- endmacro %}

{% macro duckdb__cxloop_shift_period(period_start, n) -%}
    cast({{ period_start }} + to_months(cast(({{ n }}) * {{ cxloop_period_months() }} as integer)) as date)
{%- endmacro %}

{% macro postgres__cxloop_shift_period(period_start, n) -%}
    cast({{ period_start }} + make_interval(months => cast(({{ n }}) * {{ cxloop_period_months() }} as integer)) as date)
{%- endmacro %}

{#- a relation-like select of every period_start from first_start to last_start (dates) -#}
{% macro cxloop_period_series(first_start, last_start) -%}
    {{ return(adapter.dispatch('cxloop_period_series', 'cxloop')(first_start, last_start)) }}
{%- endmacro %}

{#- any other adapter: period k = first_start + k periods for k = 0 .. 1199 (dbt's portable
    generate_series, 100 years of months), up to last_start -#}
{% macro default__cxloop_period_series(first_start, last_start) -%}
    select periods.period_start
    from (
        select cast({{ dbt.dateadd('month', '(series.generated_number - 1) * ' ~ cxloop_period_months(), first_start) }} as date)
            as period_start
        from ({{ dbt.generate_series(1200) }}) as series
    ) as periods
    where periods.period_start <= {{ last_start }}
{%- endmacro %}

{% macro duckdb__cxloop_period_series(first_start, last_start) -%}
    select cast(unnest(generate_series(
        cast({{ first_start }} as timestamp),
        cast({{ last_start }} as timestamp),
        to_months({{ cxloop_period_months() }})
    )) as date) as period_start
{%- endmacro %}

{% macro postgres__cxloop_period_series(first_start, last_start) -%}
    select cast(series.period_ts as date) as period_start
    from generate_series(
        cast({{ first_start }} as timestamp),
        cast({{ last_start }} as timestamp),
        make_interval(months => {{ cxloop_period_months() }})
    ) as series (period_ts)
{%- endmacro %}

{#- The period spine: a relation-like select of every period_start (DATE) from the period of the
    earliest `ts_column` of `relation` (a model, or a CTE of the calling model such as
    int_periods' union of every dated fact) to the period containing as_of - 1 microsecond
    (as_of is exclusive), every period in between included even when empty; no row when the
    relation is empty. Engine differences live in cxloop_period_start / cxloop_period_series /
    cxloop_just_before. -#}
{% macro cxloop_period_spine(relation, ts_column, as_of) -%}
    {{ cxloop_period_series(
        '(select ' ~ cxloop_period_start('min(' ~ ts_column ~ ')') ~ ' from ' ~ relation ~ ')',
        cxloop_period_start(cxloop_just_before(as_of))) }}
{%- endmacro %}
