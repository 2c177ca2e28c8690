{#- Calendar-clock timestamp arithmetic that engines spell differently. Each macro dispatches
    (adapter.dispatch, namespace cxloop): duckdb__ and postgres__ are the spellings the project is
    built and tested on; default__ is written with dbt's cross-database macros (dbt.dateadd,
    dbt.datediff, dbt.generate_series) or plain ANSI SQL, for any other adapter; a project can
    supply its own <adapter>__<macro> (docs/dbt-package.md). -#}

{#- the instant one microsecond before ts (the last instant of a window whose end is exclusive) -#}
{% macro cxloop_just_before(ts) -%}
    {{ return(adapter.dispatch('cxloop_just_before', 'cxloop')(ts)) }}
{%- endmacro %}

{% macro default__cxloop_just_before(ts) -%}
    ({{ dbt.dateadd('microsecond', -1, ts) }})
{%- endmacro %}

{% macro duckdb__cxloop_just_before(ts) -%}
    {{ ts }} - interval '1 microsecond'
{%- endmacro %}

{% macro postgres__cxloop_just_before(ts) -%}
    {{ ts }} - interval '1 microsecond'
{%- endmacro %}

{% macro cxloop_add_days(ts, days) -%}
    {{ return(adapter.dispatch('cxloop_add_days', 'cxloop')(ts, days)) }}
{%- endmacro %}

{% macro default__cxloop_add_days(ts, days) -%}
    ({{ dbt.dateadd('day', 'cast(' ~ days ~ ' as integer)', ts) }})
{%- endmacro %}

{% macro duckdb__cxloop_add_days(ts, days) -%}
    ({{ ts }} + to_days(cast({{ days }} as integer)))
{%- endmacro %}

{% macro postgres__cxloop_add_days(ts, days) -%}
    ({{ ts }} + make_interval(days => cast({{ days }} as integer)))
{%- endmacro %}

{#- hours may be fractional -#}
{% macro cxloop_add_hours(ts, hours) -%}
    {{ return(adapter.dispatch('cxloop_add_hours', 'cxloop')(ts, hours)) }}
{%- endmacro %}

{#- any other adapter: whole seconds, then the remaining microseconds (0 .. 999999): some engines
    multiply an interval by a 32-bit integer only, and 16 h are 57.6e9 microseconds -#}
{% macro default__cxloop_add_hours(ts, hours) -%}
    {%- set micros = 'cast(round(cast(' ~ hours ~ ' as float8) * 3600000000) as bigint)' -%}
    {%- set seconds = 'cast(floor(' ~ micros ~ ' / 1000000.0) as bigint)' -%}
    ({{ dbt.dateadd('microsecond', micros ~ ' - ' ~ seconds ~ ' * 1000000', dbt.dateadd('second', seconds, ts)) }})
{%- endmacro %}

{% macro duckdb__cxloop_add_hours(ts, hours) -%}
    ({{ ts }} + to_microseconds(cast(round(cast({{ hours }} as float8) * 3600000000) as bigint)))
{%- endmacro %}

{% macro postgres__cxloop_add_hours(ts, hours) -%}
    ({{ ts }} + make_interval(secs => cast({{ hours }} as float8) * 3600))
{%- endmacro %}

{#- (end - start) in fractional hours, float8 -#}
{% macro cxloop_hours_between(start_ts, end_ts) -%}
    {{ return(adapter.dispatch('cxloop_hours_between', 'cxloop')(start_ts, end_ts)) }}
{%- endmacro %}

{% macro default__cxloop_hours_between(start_ts, end_ts) -%}
    (cast({{ dbt.datediff(start_ts, end_ts, 'microsecond') }} as float8) / 3600000000.0)
{%- endmacro %}

{% macro duckdb__cxloop_hours_between(start_ts, end_ts) -%}
    (cast(date_diff('microsecond', {{ start_ts }}, {{ end_ts }}) as float8) / 3600000000.0)
{%- endmacro %}

{% macro postgres__cxloop_hours_between(start_ts, end_ts) -%}
    (cast(extract(epoch from ({{ end_ts }} - {{ start_ts }})) as float8) / 3600.0)
{%- endmacro %}

{#- the expressions joined by separator (a SQL string literal), nulls skipped; '' when all are
    null. DuckDB's and Postgres' concat_ws; the default spells it with || and substr, because
    Snowflake's concat_ws returns null when any argument is null and BigQuery has none. -#}
{% macro cxloop_concat_ws(separator, expressions) -%}
    {{ return(adapter.dispatch('cxloop_concat_ws', 'cxloop')(separator, expressions)) }}
{%- endmacro %}

{% macro default__cxloop_concat_ws(separator, expressions) -%}
    {%- set parts = [] -%}
    {%- for e in expressions -%}
        {%- do parts.append("coalesce(" ~ separator ~ " || (" ~ e ~ "), '')") -%}
    {%- endfor %}
    substr({{ parts | join(' || ') }}, length({{ separator }}) + 1)
{%- endmacro %}

{% macro duckdb__cxloop_concat_ws(separator, expressions) -%}
    concat_ws({{ separator }}, {{ expressions | join(', ') }})
{%- endmacro %}

{% macro postgres__cxloop_concat_ws(separator, expressions) -%}
    concat_ws({{ separator }}, {{ expressions | join(', ') }})
{%- endmacro %}

{#- a relation-like select of every calendar day from first_date to last_date (dates) -#}
{% macro cxloop_day_series(first_date, last_date) -%}
    {{ return(adapter.dispatch('cxloop_day_series', 'cxloop')(first_date, last_date)) }}
{%- endmacro %}

{#- any other adapter: first_date + k days for k = 0 .. 65535 (dbt's portable generate_series,
    about 179 years), up to last_date -#}
{% macro default__cxloop_day_series(first_date, last_date) -%}
    select days.calendar_date
    from (
        select cast({{ dbt.dateadd('day', 'series.generated_number - 1', first_date) }} as date) as calendar_date
        from ({{ dbt.generate_series(65536) }}) as series
    ) as days
    where days.calendar_date <= {{ last_date }}
{%- endmacro %}

{% macro duckdb__cxloop_day_series(first_date, last_date) -%}
    select cast(unnest(generate_series(
        cast({{ first_date }} as timestamp),
        cast({{ last_date }} as timestamp),
        interval '1 day'
    )) as date) as calendar_date
{%- endmacro %}

{% macro postgres__cxloop_day_series(first_date, last_date) -%}
    select cast(series.day_ts as date) as calendar_date
    from generate_series(
        cast({{ first_date }} as timestamp),
        cast({{ last_date }} as timestamp),
        interval '1 day'
    ) as series (day_ts)
{%- endmacro %}

{#- ISO day of week of a date/timestamp, 1 = Monday ... 7 = Sunday -#}
{% macro cxloop_iso_day_of_week(ts) -%}
    {{ return(adapter.dispatch('cxloop_iso_day_of_week', 'cxloop')(ts)) }}
{%- endmacro %}

{#- any other adapter: days since Monday 1900-01-01, modulo 7, plus 1 (dates from 1900 on) -#}
{% macro default__cxloop_iso_day_of_week(ts) -%}
    cast(mod({{ dbt.datediff("cast('1900-01-01' as date)", 'cast(' ~ ts ~ ' as date)', 'day') }}, 7) + 1 as integer)
{%- endmacro %}

{% macro duckdb__cxloop_iso_day_of_week(ts) -%}
    cast(isodow({{ ts }}) as integer)
{%- endmacro %}

{% macro postgres__cxloop_iso_day_of_week(ts) -%}
    cast(extract(isodow from {{ ts }}) as integer)
{%- endmacro %}

{#- business-hours clock reading of a timestamp, given the alias of its int_business_calendar
    day row: hours before that day + the part of the day's business window elapsed at ts -#}
{% macro cxloop_business_clock(day_alias, ts) -%}
    case when {{ ts }} is not null then
        {{ day_alias }}.cum_hours_before
        + case
            when {{ day_alias }}.business_hours = 0 or {{ ts }} <= {{ day_alias }}.open_at then 0.0
            when {{ ts }} >= {{ day_alias }}.close_at then {{ day_alias }}.business_hours
            else {{ cxloop_hours_between(day_alias ~ '.open_at', ts) }}
        end
    end
{%- endmacro %}
