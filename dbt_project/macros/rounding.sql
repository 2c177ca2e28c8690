{#- The one rounding of every computed float column of the marts: 9 decimals. A float sum
    depends on the order the engine adds the rows in (parallel aggregation), so two runs over
    identical data could differ in the last binary digit; rounded at the mart they are equal.
    9 decimals keep far more precision than any rate or NPS is read at. Both engines round half
    away from zero on the float8 value, so DuckDB and Postgres give the same double. -#}
{% macro cxloop_round(expr, digits=9) -%}
    {{ return(adapter.dispatch('cxloop_round', 'cxloop')(expr, digits)) }}
{%- endmacro %}

{% macro default__cxloop_round(expr, digits=9) -%}
    round(cast({{ expr }} as float8), {{ digits }})
{%- endmacro %}

{#- Postgres has no round(float8, int) (only numeric, whose cast from float8 keeps 15
    significant digits): the same arithmetic as DuckDB's round(double, n), spelled out;
    above 2^52 a float8 has no fraction left to round. -#}
{% macro postgres__cxloop_round(expr, digits=9) -%}
    {%- set scaled = '(cast(' ~ expr ~ ' as float8) * 1e' ~ digits ~ ')' -%}
    (case
        when abs({{ scaled }}) < 4503599627370496.0
            then sign({{ scaled }}) * floor(abs({{ scaled }}) + 0.5)
        else {{ scaled }}
    end / 1e{{ digits }})
{%- endmacro %}

{#- a sum of float values (e.g. ARR) that does not depend on the order of the rows: added as
    exact decimals (9 places), returned as float8 -#}
{% macro cxloop_exact_sum(expr) -%}
    cast(sum(cast({{ expr }} as decimal(38, 9))) as {{ cxloop_type('float8') }})
{%- endmacro %}
