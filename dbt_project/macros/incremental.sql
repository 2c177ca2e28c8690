{#- The filter of an incremental base model: on an incremental run, only the raw rows of batches
    the model has not merged yet. Landed batches are immutable and every load writes its own
    batch id (a re-delivered row replaces the raw row under the new batch's id; released
    quarantine rows arrive under a release batch), so this reads exactly what changed, however
    late a batch was loaded, and nothing else. Empty on a full build. -#}
{% macro cxloop_loaded_since_last_build() -%}
    {%- if is_incremental() %}
    where _batch_id not in (select distinct batch_id from {{ this }} where batch_id is not null)
    {%- endif %}
{%- endmacro %}

{#- Post-hook of every model: on Postgres, refresh the planner's statistics of a table just
    built. Without them Postgres takes a fresh 80k-row table for 5 rows and plans nested loops
    (at_risk_accounts on the large bench: 65 s instead of well under one). DuckDB keeps its
    statistics itself, and any other adapter does nothing either (default__). -#}
{% macro cxloop_analyze_table() -%}
    {{ return(adapter.dispatch('cxloop_analyze_table', 'cxloop')()) }}
{%- endmacro %}

{% macro default__cxloop_analyze_table() -%}
{%- endmacro %}

{% macro postgres__cxloop_analyze_table() -%}
    {%- if config.get('materialized') in ('table', 'incremental') -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}
