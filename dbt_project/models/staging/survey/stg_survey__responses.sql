with

base as (

    select * from {{ ref('base_survey__responses') }}

),

final as (

    select * from base
    where recorded_at < {{ cxloop_as_of(var('as_of', none)) }}

)

select * from final
