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

{#- The incremental strategy of the models that rebuild only what changed (int_responses_enriched
    keyed on response_id; int_responses_counted and int_account_period_scores keyed on
    period_start): delete the key's rows, insert the rebuilt ones. DuckDB and Postgres run
    dbt's delete+insert; an adapter without it (Spark on parquet) overrides
    <adapter>__cxloop_incremental_strategy. -#}
{% macro cxloop_incremental_strategy() -%}
    {{ return(adapter.dispatch('cxloop_incremental_strategy', 'cxloop')()) }}
{%- endmacro %}

{% macro default__cxloop_incremental_strategy() -%}
    {{ return('delete+insert') }}
{%- endmacro %}

{#- The build sequence number of an incremental model's rows rebuilt by this build: one more
    than the greatest in the table (1 on a full build). Downstream period models compare it
    with the sequence they last consumed (cxloop_touched_response_periods). -#}
{% macro cxloop_next_build_seq() -%}
    {%- if is_incremental() -%}
        (select coalesce(max(build_seq), 0) + 1 from {{ this }})
    {%- else -%}
        cast(1 as bigint)
    {%- endif -%}
{%- endmacro %}

{#- Pre-hook of the period models built from int_responses_enriched (int_responses_counted,
    int_account_period_scores): on an incremental build, delete the NPS periods to rebuild, i.e.
    the periods of the enriched rows rebuilt since this model last consumed it (their period and
    the period a changed response was in before: enriched_build_seq is the enriched build_seq a
    row was built from), and every period from the one containing as_of on (the window's end
    moves with as_of; a rerun with an earlier as_of drops the later periods). The model then
    builds the periods missing from it (cxloop_periods_to_build). -#}
{% macro cxloop_delete_touched_periods() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where period_start in (
        select period_start from {{ ref('int_responses_enriched') }}
        where build_seq > (select coalesce(max(consumed.enriched_build_seq), 0) from {{ this }} as consumed)
        union
        select replaced_period_start from {{ ref('int_responses_enriched') }}
        where build_seq > (select coalesce(max(consumed.enriched_build_seq), 0) from {{ this }} as consumed)
            and replaced_period_start is not null
    )
    or period_start >= {{ cxloop_period_start(cxloop_just_before(cxloop_as_of(var('as_of', none)))) }}
    {%- endif -%}
{%- endmacro %}

{#- The filter of a period model's input on an incremental build: only the periods it does not
    hold (the pre-hook cxloop_delete_touched_periods removed the touched ones). Empty on a full
    build. `column` is the input's period column. -#}
{% macro cxloop_periods_to_build(column='period_start') -%}
    {%- if is_incremental() %}
    where {{ column }} not in (select distinct period_start from {{ this }})
    {%- endif %}
{%- endmacro %}
