{#- Closed-loop SLA semantics (contract 6), shared by both clocks. Expects columns
    first_contact_at, follow_up_id and as_of_ts in scope. -#}

{#- sla_status against a first-contact due time:
    met = first contact at or before due; breached = first contact after due, or none while a
    follow-up exists and as_of is past due; missing = no follow-up and as_of past due;
    active = no first contact and as_of not past due (also when due is unknown). -#}
{% macro cxloop_sla_status(due_at) -%}
    case
        when first_contact_at is not null and first_contact_at <= {{ due_at }} then 'met'
        when first_contact_at is not null and {{ due_at }} is not null then 'breached'
        when {{ due_at }} is null or as_of_ts <= {{ due_at }} then 'active'
        when follow_up_id is not null then 'breached'
        else 'missing'
    end
{%- endmacro %}

{#- the clock of follow_up_sla.sla_status (var sla_clock: calendar | business) -#}
{% macro cxloop_sla_clock() -%}
    {%- set clock = var('sla_clock', 'calendar') | string | lower -%}
    {%- if clock not in ['calendar', 'business'] -%}
        {{ exceptions.raise_compiler_error("cxloop: var `sla_clock` must be 'calendar' or 'business', got '" ~ clock ~ "'") }}
    {%- endif -%}
    {{ return(clock) }}
{%- endmacro %}
