{#- Custom schemas (staging, intermediate, marts, seeds, snapshots) are used verbatim, never
    prefixed with the target schema, so DuckDB and Postgres expose the same `marts` schema.
    Installed as a package, this macro still names the schemas of cxloop's own nodes (dbt applies
    a package's generate_schema_name to that package's nodes only); a host project that already
    has a `marts` or `staging` schema sets var cxloop_schema_prefix (e.g. 'cxloop_': schemas
    cxloop_staging, ..., cxloop_marts). Default '': the names above. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ var('cxloop_schema_prefix', '') | trim }}{{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
