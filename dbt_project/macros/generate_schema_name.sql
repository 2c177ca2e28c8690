{#- Custom schemas (staging, intermediate, marts, seeds) are used verbatim, never prefixed
    with the target schema, so DuckDB and Postgres expose the same `marts` schema. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
