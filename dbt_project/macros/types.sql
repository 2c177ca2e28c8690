{#- The SQL name of one of the logical types the models cast to and the mart contracts declare:
    text, float8, bigint, integer, boolean, timestamp, date. The default is the name itself
    (DuckDB, Postgres and Snowflake read all of them); an engine that spells some differently
    maps them in its <adapter>__cxloop_type (Spark: macros/adapters/spark.sql). -#}
{% macro cxloop_type(name) -%}
    {{ return(adapter.dispatch('cxloop_type', 'cxloop')(name)) }}
{%- endmacro %}

{% macro default__cxloop_type(name) -%}
    {{ return(name) }}
{%- endmacro %}
