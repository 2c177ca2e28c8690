{#- Project generic data tests (dbt_utils cannot be installed here). -#}

{#- every non-null value lies in [min_value - tolerance, max_value + tolerance] (either bound
    optional, a missing bound compares with null, which never fails; tolerance absorbs float
    rounding of weighted means, e.g. 100.00000000000001) -#}
{% test value_between(model, column_name, min_value=none, max_value=none, tolerance=0) %}
    select {{ column_name }} as failing_value
    from {{ model }}
    where
        {{ column_name }} is not null
        and (
            {{ column_name }} < {{ 'null' if min_value is none else min_value }} - {{ tolerance }}
            or {{ column_name }} > {{ 'null' if max_value is none else max_value }} + {{ tolerance }}
        )
{% endtest %}

{#- the combination of columns is unique (the model's grain) -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    select {{ combination_of_columns | join(', ') }}, count(*) as n_rows
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
{% endtest %}

{#- a boolean SQL expression holds on every row -#}
{% test expression_is_true(model, expression) %}
    select *
    from {{ model }}
    where not coalesce(({{ expression }}), false)
{% endtest %}

{#- none of the columns holds a null: one pass over the model for all of them, instead of one
    not_null test (one more scan of a view, one more dbt node) per column. A failure returns a
    row per column that has nulls; the failure count is the number of null values. count(case ...)
    rather than count(*) filter (where ...): Snowflake and BigQuery have no filter clause. -#}
{% test not_null_columns(model, columns) %}
    {{ config(fail_calc = 'coalesce(sum(null_rows), 0)') }}
    with null_counts as (
        select
            {% for c in columns %}
                count(case when {{ c }} is null then 1 end) as null_{{ loop.index }}{{ "," if not loop.last }}
            {% endfor %}
        from {{ model }}
    )

    {% for c in columns %}
        select
            '{{ c }}' as column_name,
            null_{{ loop.index }} as null_rows
        from null_counts
        where null_{{ loop.index }} > 0
        {{ "union all" if not loop.last }}
    {% endfor %}
{% endtest %}
