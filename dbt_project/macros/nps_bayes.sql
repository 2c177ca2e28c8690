{#- The bayes account NPS (contract 3.1, docs/metric-contract.md 3.7; calibration in
    docs/nps-calibration.md). The same numbers and formulas are in plugins/cxloop/bench_stats.py
    (the calibration bench) and tests/oracle_bayes.py (the oracle): change them together.
    Every division in float8. -#}

{#- constants: the weak default prior Dirichlet(1, 1, 1) (uniform on the simplex), the
    responding accounts a moment fit needs, the bounds of a fitted concentration, and the
    pseudo-responses per class in a fitted prior mean -#}
{% macro cxloop_bayes_default_alpha() -%}1.0{%- endmacro %}
{% macro cxloop_bayes_min_accounts() -%}10{%- endmacro %}
{% macro cxloop_bayes_min_concentration() -%}1.0{%- endmacro %}
{% macro cxloop_bayes_max_concentration() -%}20.0{%- endmacro %}
{% macro cxloop_bayes_mean_pseudo() -%}0.5{%- endmacro %}

{#- Method-of-moments fit of a Dirichlet-multinomial over a group of accounts, from its
    aggregates: m accounts, T = sum n_i, class totals C_k, sq_k = sum_i c_ik^2 / n_i and
    sum_n2 = sum_i n_i^2. Fitted mean pi_k = (C_k + 0.5) / (T + 1.5).
    cxloop_bayes_x2: Pearson statistic X2 = sum_k sq_k / pi_k - T.
    cxloop_bayes_denominator: sum_i (n_i - 1)(1 - n_i / T) = (T - m) - (sum_n2 - T) / T.
    cxloop_bayes_rho: rho = (X2 / 2 - (m - 1)) / denominator (E[X2] = 2 ((m - 1) + rho * den)),
    null when the fit is not usable (m < min_accounts or denominator <= 1e-12).
    cxloop_bayes_concentration: s = (1 - rho) / rho clipped to [min, max]; max when rho <= 0. -#}
{% macro cxloop_bayes_pi(class_total, total) -%}
    ((cast({{ class_total }} as {{ cxloop_type('float8') }}) + {{ cxloop_bayes_mean_pseudo() }})
        / (cast({{ total }} as {{ cxloop_type('float8') }}) + 3.0 * {{ cxloop_bayes_mean_pseudo() }}))
{%- endmacro %}

{% macro cxloop_bayes_x2(total, c_p, c_a, c_d, sq_p, sq_a, sq_d) -%}
    (
        cast({{ sq_p }} as {{ cxloop_type('float8') }}) / {{ cxloop_bayes_pi(c_p, total) }}
        + cast({{ sq_a }} as {{ cxloop_type('float8') }}) / {{ cxloop_bayes_pi(c_a, total) }}
        + cast({{ sq_d }} as {{ cxloop_type('float8') }}) / {{ cxloop_bayes_pi(c_d, total) }}
        - cast({{ total }} as {{ cxloop_type('float8') }})
    )
{%- endmacro %}

{% macro cxloop_bayes_denominator(m, total, sum_n2) -%}
    (
        (cast({{ total }} as {{ cxloop_type('float8') }}) - cast({{ m }} as {{ cxloop_type('float8') }}))
        - (cast({{ sum_n2 }} as {{ cxloop_type('float8') }}) - cast({{ total }} as {{ cxloop_type('float8') }})) / cast({{ total }} as {{ cxloop_type('float8') }})
    )
{%- endmacro %}

{% macro cxloop_bayes_rho(m, total, sum_n2, x2) -%}
    case
        when {{ m }} >= {{ cxloop_bayes_min_accounts() }}
            and {{ cxloop_bayes_denominator(m, total, sum_n2) }} > 1e-12
            then ({{ x2 }} / 2.0 - (cast({{ m }} as {{ cxloop_type('float8') }}) - 1.0))
                / {{ cxloop_bayes_denominator(m, total, sum_n2) }}
    end
{%- endmacro %}

{% macro cxloop_bayes_concentration(rho) -%}
    case
        when {{ rho }} is null then null
        when {{ rho }} <= 0 then {{ cxloop_bayes_max_concentration() }}
        else {{ cxloop_clip('(1.0 - ' ~ rho ~ ') / ' ~ rho, cxloop_bayes_min_concentration(), cxloop_bayes_max_concentration()) }}
    end
{%- endmacro %}

{#- Posterior-predictive NPS of the eligible population. Posterior Dirichlet a = alpha + counts
    (unweighted), A = a_p + a_a + a_d, mu_p = a_p / A, mu_d = a_d / A, e = mu_p - mu_d,
    g = mu_p + mu_d - e^2. Responders: known sum s_resp = sum w s over weight w_resp;
    non-responders: w_non = sum w_j, q_non = sum w_j^2.
    mean (points)     = 100 (s_resp + w_non e) / (w_resp + w_non)
    variance (pts^2)  = 10000 g (q_non A + w_non^2) / (A + 1) / (w_resp + w_non)^2 -#}
{% macro cxloop_bayes_e(a_p, a_a, a_d) -%}
    ((cast({{ a_p }} as {{ cxloop_type('float8') }}) - cast({{ a_d }} as {{ cxloop_type('float8') }}))
        / (cast({{ a_p }} as {{ cxloop_type('float8') }}) + cast({{ a_a }} as {{ cxloop_type('float8') }}) + cast({{ a_d }} as {{ cxloop_type('float8') }})))
{%- endmacro %}

{% macro cxloop_bayes_mean(a_p, a_a, a_d, s_resp, w_resp, w_non) -%}
    (100.0 * (cast({{ s_resp }} as {{ cxloop_type('float8') }}) + cast({{ w_non }} as {{ cxloop_type('float8') }}) * {{ cxloop_bayes_e(a_p, a_a, a_d) }})
        / (cast({{ w_resp }} as {{ cxloop_type('float8') }}) + cast({{ w_non }} as {{ cxloop_type('float8') }})))
{%- endmacro %}

{% macro cxloop_bayes_var(a_p, a_a, a_d, w_resp, w_non, q_non) -%}
    {%- set f8 = cxloop_type('float8') -%}
    {%- set big_a = '(cast(' ~ a_p ~ ' as ' ~ f8 ~ ') + cast(' ~ a_a ~ ' as ' ~ f8 ~ ') + cast(' ~ a_d ~ ' as ' ~ f8 ~ '))' -%}
    {%- set e = cxloop_bayes_e(a_p, a_a, a_d) -%}
    (
        10000.0
        * ((cast({{ a_p }} as {{ cxloop_type('float8') }}) + cast({{ a_d }} as {{ cxloop_type('float8') }})) / {{ big_a }} - power({{ e }}, 2))
        * (cast({{ q_non }} as {{ cxloop_type('float8') }}) * {{ big_a }} + power(cast({{ w_non }} as {{ cxloop_type('float8') }}), 2))
        / ({{ big_a }} + 1.0)
        / power(cast({{ w_resp }} as {{ cxloop_type('float8') }}) + cast({{ w_non }} as {{ cxloop_type('float8') }}), 2)
    )
{%- endmacro %}
