with

base as (

    select * from {{ ref('base_survey__invitations') }}

),

final as (

    select * from base
    where sent_at < {{ cxloop_as_of(var('as_of', none)) }}

)

select * from final
