{#- Node configs that depend on the engine (dispatched like the SQL macros; Spark's spellings
    are in macros/adapters/spark.sql). -#}

{#- materialized= of every incremental model (the base models merging on their unique_key, the
    response chain's delete+insert): `table` where the engine has neither (Spark on parquet) -#}
{% macro cxloop_incremental_materialization() -%}
    {{ return(adapter.dispatch('cxloop_incremental_materialization', 'cxloop')()) }}
{%- endmacro %}

{% macro default__cxloop_incremental_materialization() -%}
    {{ return('incremental') }}
{%- endmacro %}

{#- the rows of a CRM snapshot (snap_crm__accounts / snap_crm__contacts) as int_*_versions read
    them: the snapshot itself, on every engine that has snapshots -#}
{% macro cxloop_crm_versions(snapshot_name, source_table) -%}
    {{ return(adapter.dispatch('cxloop_crm_versions', 'cxloop')(snapshot_name, source_table)) }}
{%- endmacro %}

{% macro default__cxloop_crm_versions(snapshot_name, source_table) -%}
    select * from {{ ref(snapshot_name) }}
{%- endmacro %}
