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
