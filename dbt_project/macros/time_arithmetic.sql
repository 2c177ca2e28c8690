{#- Calendar-clock timestamp arithmetic that DuckDB and Postgres spell differently. -#}

{% macro cxloop_add_days(ts, days) -%}
    {{ return(adapter.dispatch('cxloop_add_days', 'cxloop')(ts, days)) }}
{%- endmacro %}

{% macro default__cxloop_add_days(ts, days) -%}
    ({{ ts }} + to_days(cast({{ days }} as integer)))
{%- endmacro %}

{% macro postgres__cxloop_add_days(ts, days) -%}
    ({{ ts }} + make_interval(days => cast({{ days }} as integer)))
{%- endmacro %}

{#- hours may be fractional -#}
{% macro cxloop_add_hours(ts, hours) -%}
    {{ return(adapter.dispatch('cxloop_add_hours', 'cxloop')(ts, hours)) }}
{%- endmacro %}

{% macro default__cxloop_add_hours(ts, hours) -%}
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
    (cast(date_diff('microsecond', {{ start_ts }}, {{ end_ts }}) as float8) / 3600000000.0)
{%- endmacro %}

{% macro postgres__cxloop_hours_between(start_ts, end_ts) -%}
    (cast(extract(epoch from ({{ end_ts }} - {{ start_ts }})) as float8) / 3600.0)
{%- endmacro %}

{#- concat_ws skipping nulls (both engines have it, kept here to name the dependency) -#}
{% macro cxloop_concat_ws(separator, expressions) -%}
    {{ return(adapter.dispatch('cxloop_concat_ws', 'cxloop')(separator, expressions)) }}
{%- endmacro %}

{% macro default__cxloop_concat_ws(separator, expressions) -%}
    concat_ws({{ separator }}, {{ expressions | join(', ') }})
{%- endmacro %}

{#- a relation-like select of every calendar day from first_date to last_date (dates) -#}
{% macro cxloop_day_series(first_date, last_date) -%}
    {{ return(adapter.dispatch('cxloop_day_series', 'cxloop')(first_date, last_date)) }}
{%- endmacro %}

{% macro default__cxloop_day_series(first_date, last_date) -%}
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

{% macro default__cxloop_iso_day_of_week(ts) -%}
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
