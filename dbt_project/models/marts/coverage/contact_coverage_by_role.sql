with

slots as (

    select * from {{ ref('int_coverage_role_slots') }}

),

final as (

    select
        period_start,
        account_id,
        tier,
        slot_tier,
        cast(role as {{ cxloop_type('text') }}) as role,
        cast(required as integer) as required,
        cast(n_on_file as integer) as on_file,
        cast(n_invited as integer) as invited,
        cast(n_responded as integer) as responded,
        cast(case when n_on_file < required then n_on_file else required end as integer) as slots_on_file,
        cast(case when n_invited < required then n_invited else required end as integer) as slots_invited,
        cast(case when n_responded < required then n_responded else required end as integer) as slots_responded
    from slots

)

select * from final
