{#- NPS arithmetic shared by the marts (contract 2-3, docs/metric-decisions.md).
    Every division is done in float8 (Postgres would otherwise divide integers). -#}

{#- The score class (contract 2): promoter 9-10, passive 7-8, detractor 0-6, a null score has
    no class. The one place the cut-offs are coded: every class, class value and classed mean
    (portfolio_nps classes accounts by their role-weighted mean score with the same cut-offs)
    goes through it. `score` is any SQL expression on the 0-10 scale; the three results are SQL
    expressions too (default: the class names). -#}
{% macro cxloop_score_class(score, promoter="'promoter'", passive="'passive'", detractor="'detractor'") -%}
    case
        when {{ score }} is null then null
        when {{ score }} >= 9 then {{ promoter }}
        when {{ score }} >= 7 then {{ passive }}
        else {{ detractor }}
    end
{%- endmacro %}

{#- score class value s: +1 promoter, 0 passive, -1 detractor, null no score -#}
{% macro cxloop_score_value(score) -%}
    {{ cxloop_score_class(score, promoter=1, passive=0, detractor=-1) }}
{%- endmacro %}

{#- 100 * (P - D) / n, null when n = 0 -#}
{% macro cxloop_nps(promoters, detractors, n) -%}
    case when {{ n }} > 0
        then 100.0 * cast({{ promoters }} - {{ detractors }} as {{ cxloop_type('float8') }}) / cast({{ n }} as {{ cxloop_type('float8') }})
    end
{%- endmacro %}

{#- finite-population correction factor (N - n)/(N - 1) when N > 1 and n <= N, else 1 -#}
{% macro cxloop_fpc(n, population) -%}
    case when {{ population }} > 1 and {{ n }} <= {{ population }}
        then cast({{ population }} - {{ n }} as {{ cxloop_type('float8') }}) / cast({{ population }} - 1 as {{ cxloop_type('float8') }})
        else 1.0
    end
{%- endmacro %}

{#- adjusted Wald variance of the NPS as a fraction (not points):
    n' = n + 3, p' = (P + 0.75)/n', d' = (D + 0.75)/n', var = (p' + d' - (p' - d')^2)/n' * fpc -#}
{% macro cxloop_wald_var(promoters, detractors, n, population) -%}
    (
        (
            (cast({{ promoters }} as {{ cxloop_type('float8') }}) + 0.75) / (cast({{ n }} as {{ cxloop_type('float8') }}) + 3.0)
            + (cast({{ detractors }} as {{ cxloop_type('float8') }}) + 0.75) / (cast({{ n }} as {{ cxloop_type('float8') }}) + 3.0)
            - power(
                (cast({{ promoters }} as {{ cxloop_type('float8') }}) + 0.75) / (cast({{ n }} as {{ cxloop_type('float8') }}) + 3.0)
                - (cast({{ detractors }} as {{ cxloop_type('float8') }}) + 0.75) / (cast({{ n }} as {{ cxloop_type('float8') }}) + 3.0),
                2)
        ) / (cast({{ n }} as {{ cxloop_type('float8') }}) + 3.0)
        * {{ cxloop_fpc(n, population) }}
    )
{%- endmacro %}

{#- adjusted Wald centre p' - d' as a fraction -#}
{% macro cxloop_wald_centre(promoters, detractors, n) -%}
    (
        (cast({{ promoters }} as {{ cxloop_type('float8') }}) + 0.75) / (cast({{ n }} as {{ cxloop_type('float8') }}) + 3.0)
        - (cast({{ detractors }} as {{ cxloop_type('float8') }}) + 0.75) / (cast({{ n }} as {{ cxloop_type('float8') }}) + 3.0)
    )
{%- endmacro %}

{#- clip a value to [lo, hi]; null stays null (greatest/least treat nulls differently per engine) -#}
{% macro cxloop_clip(value, lo=-100, hi=100) -%}
    case
        when {{ value }} is null then null
        when {{ value }} < {{ lo }} then cast({{ lo }} as {{ cxloop_type('float8') }})
        when {{ value }} > {{ hi }} then cast({{ hi }} as {{ cxloop_type('float8') }})
        else cast({{ value }} as {{ cxloop_type('float8') }})
    end
{%- endmacro %}

{#- z of the 95% interval -#}
{% macro cxloop_z() -%}1.96{%- endmacro %}
