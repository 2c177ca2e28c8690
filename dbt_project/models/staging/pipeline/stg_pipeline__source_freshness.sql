with

{#- the table exists in cxloop's own warehouse (an on-run-start hook creates it); a host
    project that installs the package has none: then no freshness rows -#}
{%- set relation = source('pipeline', 'source_freshness') -%}
{%- set present = (not execute) or project_name == 'cxloop'
    or adapter.get_relation(relation.database, relation.schema, relation.identifier) is not none %}
source as (

    {% if present -%}
    select * from {{ relation }}
    {%- else -%}
    select
        cast(null as timestamp) as as_of, cast(null as text) as source_name,
        cast(null as text) as table_name, cast(null as text) as source_system,
        cast(null as text) as batch_id, cast(null as text) as status,
        cast(null as timestamp) as loaded_up_to, cast(null as timestamp) as reference_at,
        cast(null as float8) as age_hours, cast(null as integer) as warn_after_hours,
        cast(null as integer) as error_after_hours
    where 1 = 0
    {%- endif %}

),

renamed as (

    select
        cast(as_of as timestamp) as as_of,
        cast(source_name as text) as source_name,
        cast(table_name as text) as table_name,
        cast(source_system as text) as source_system,
        cast(batch_id as text) as batch_id,
        cast(status as text) as status,
        cast(loaded_up_to as timestamp) as loaded_up_to,
        cast(reference_at as timestamp) as reference_at,
        cast(age_hours as float8) as age_hours,
        cast(warn_after_hours as integer) as warn_after_hours,
        cast(error_after_hours as integer) as error_after_hours
    from source

),

final as (

    select * from renamed

)

select * from final
