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
