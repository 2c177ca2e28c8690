{#- The filter of an incremental base model: on an incremental run, only raw rows loaded since
    the latest loaded_at already stored, minus var incremental_lookback_hours (late or
    re-delivered batches keep their first _loaded_at). Empty on a full build. -#}
{% macro cxloop_loaded_since_last_build() -%}
    {%- if is_incremental() %}
    where _loaded_at >= (
        select {{ cxloop_add_hours('max(loaded_at)', -1 * var('incremental_lookback_hours')) }}
        from {{ this }}
    )
    {%- endif %}
{%- endmacro %}
