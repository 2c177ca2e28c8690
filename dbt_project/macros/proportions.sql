{#- Intervals of a proportion x / n and of a difference of two proportions (95%, z = 1.96).

    Wilson score interval (Wilson 1927), for the renewal rate of nps_renewal_outcomes:
        p = x / n,  d = 1 + z^2 / n
        centre = (p + z^2 / (2n)) / d,  half = z * sqrt(p (1 - p) / n + z^2 / (4 n^2)) / d
        [centre - half, centre + half]  (inside [0, 1]; null when n = 0)

    Newcombe's hybrid score interval (Newcombe 1998, method 10) for p1 - p2 from the two
    Wilson intervals [l1, u1] and [l2, u2]:
        low  = (p1 - p2) - sqrt((p1 - l1)^2 + (u2 - p2)^2)
        high = (p1 - p2) + sqrt((u1 - p1)^2 + (p2 - l2)^2)
-#}

{% macro cxloop_wilson_centre(x, n, z=1.96) -%}
    case when {{ n }} > 0 then
        (cast({{ x }} as {{ cxloop_type('float8') }}) / cast({{ n }} as {{ cxloop_type('float8') }}) + {{ z }} * {{ z }} / (2.0 * cast({{ n }} as {{ cxloop_type('float8') }})))
        / (1.0 + {{ z }} * {{ z }} / cast({{ n }} as {{ cxloop_type('float8') }}))
    end
{%- endmacro %}

{% macro cxloop_wilson_half(x, n, z=1.96) -%}
    case when {{ n }} > 0 then
        {{ z }} * sqrt(
            (cast({{ x }} as {{ cxloop_type('float8') }}) / cast({{ n }} as {{ cxloop_type('float8') }}))
                * (1.0 - cast({{ x }} as {{ cxloop_type('float8') }}) / cast({{ n }} as {{ cxloop_type('float8') }})) / cast({{ n }} as {{ cxloop_type('float8') }})
            + {{ z }} * {{ z }} / (4.0 * cast({{ n }} as {{ cxloop_type('float8') }}) * cast({{ n }} as {{ cxloop_type('float8') }}))
        ) / (1.0 + {{ z }} * {{ z }} / cast({{ n }} as {{ cxloop_type('float8') }}))
    end
{%- endmacro %}

{% macro cxloop_wilson_low(x, n, z=1.96) -%}
    case when {{ n }} > 0 then
        greatest(0.0, ({{ cxloop_wilson_centre(x, n, z) }}) - ({{ cxloop_wilson_half(x, n, z) }}))
    end
{%- endmacro %}

{% macro cxloop_wilson_high(x, n, z=1.96) -%}
    case when {{ n }} > 0 then
        least(1.0, ({{ cxloop_wilson_centre(x, n, z) }}) + ({{ cxloop_wilson_half(x, n, z) }}))
    end
{%- endmacro %}

{#- p1, l1, u1, p2, l2, u2: column expressions (proportion and its Wilson bounds) -#}
{% macro cxloop_newcombe_low(p1, l1, u1, p2, l2, u2) -%}
    ({{ p1 }} - {{ p2 }}) - sqrt(({{ p1 }} - {{ l1 }}) * ({{ p1 }} - {{ l1 }}) + ({{ u2 }} - {{ p2 }}) * ({{ u2 }} - {{ p2 }}))
{%- endmacro %}

{% macro cxloop_newcombe_high(p1, l1, u1, p2, l2, u2) -%}
    ({{ p1 }} - {{ p2 }}) + sqrt(({{ u1 }} - {{ p1 }}) * ({{ u1 }} - {{ p1 }}) + ({{ p2 }} - {{ l2 }}) * ({{ p2 }} - {{ l2 }}))
{%- endmacro %}
