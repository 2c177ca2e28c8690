{#- The account-team (owner) dimension as of the run: one row per CRM owner id
    (stg_crm__owners; when the CRM delivered an owner more than once, the row updated last,
    then loaded last, wins), with its team, name and active flag. account_directory joins it
    for each account's owner. -#}
with

owners_ranked as (

    select
        owners.*,
        row_number() over (
            partition by owners.owner_id
            order by
                owners.updated_at desc nulls last,
                owners.loaded_at desc nulls last,
                owners.owner_name asc nulls last,
                owners.team asc nulls last
        ) as owner_rank
    from {{ ref('stg_crm__owners') }} as owners

),

owners as (

    select * from owners_ranked
    where owner_rank = 1

),

final as (

    select
        cast(owners.owner_id as {{ cxloop_type('text') }}) as owner_id,
        cast(owners.team as {{ cxloop_type('text') }}) as owner_team,
        cast(owners.owner_name as {{ cxloop_type('text') }}) as owner_name,
        cast(owners.is_active as boolean) as is_active
    from owners

)

select * from final
