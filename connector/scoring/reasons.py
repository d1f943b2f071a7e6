"""Reason-code catalogue (English and Chinese) and the ordering of reasons on an assessment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.models import Account
from connector.scoring.features import Features
from connector.scoring.policy import ScoringPolicy
from connector.scoring.rating import (
    HARD_INSOLVENCY,
    HARD_SEVERE,
    HARD_WRITE_OFF,
    NO_HISTORY,
    THIN_FILE_CAP,
    Factor,
    Rating,
    compiled,
)

# code -> (English, Chinese) templates; placeholders are filled by the builders below.
CATALOGUE: dict[str, tuple[str, str]] = {
    HARD_SEVERE: (
        "{count} {invoices} more than {days} days past due, {amount}{cur}: band at least {band}",
        "{count} 张发票逾期超过 {days} 天，金额 {amount}{cur}：评级至少为 {band}",
    ),
    HARD_WRITE_OFF: (
        "{count} {invoices} written off in the last {days} days: band {band}",
        "过去 {days} 天内有 {count} 张发票被核销：评级为 {band}",
    ),
    HARD_INSOLVENCY: (
        "Insolvency flag set on the account: band {band}",
        "账户已标记为破产或无力偿债：评级为 {band}",
    ),
    THIN_FILE_CAP: (
        "Only {count} settled {invoices} and no external score: band no better than {band}",
        "仅有 {count} 张已结清发票且无外部评分：评级不优于 {band}",
    ),
    NO_HISTORY: (
        "No invoice history, external score or financials: unrated, score set to {score}",
        "无发票历史、外部评分或财务数据：未评级，评分设为 {score}",
    ),
    "DBT_HIGH": (
        "Pays {timing} on average (amount-weighted, last {window} days, open items to date)",
        "过去 {window} 天按金额加权平均{timing}付款（含至今未付的逾期发票）",
    ),
    "LATE_SHARE": (
        "{share} of the amount paid in the last {window} days was paid more than {grace} days late",
        "过去 {window} 天已付金额中有 {share} 逾期超过 {grace} 天才支付",
    ),
    "PAST_DUE_NOW": (
        "{count} {invoices} {bucket} days past due, {amount}{cur} ({share} of the open balance overdue)",
        "{count} 张发票逾期{bucket}天，金额 {amount}{cur}（未结余额的 {share} 已逾期）",
    ),
    "TREND_WORSE": (
        "Payment delays worsening: {recent} days beyond terms in the last {recent_days} days vs {prior} before (+{trend})",
        "付款延迟在恶化：最近 {recent_days} 天平均超期 {recent} 天，此前为 {prior} 天（+{trend}）",
    ),
    "EXTERNAL_SCORE": (
        "External score {score} of {scale}{source}",
        "外部信用评分 {score}（满分 {scale}）{source}",
    ),
    "DISPUTES": (
        "{share} of the amount invoiced in the last {window} days is disputed ({open} open {disputes})",
        "过去 {window} 天开票金额中有 {share} 存在争议（{open} 个未解决争议）",
    ),
    "OVER_LIMIT": (
        "Exposure {exposure}{cur} is {share} of the {limit}{cur} credit limit",
        "敞口 {exposure}{cur}，占信用额度 {limit}{cur} 的 {share}",
    ),
    "THIN_FILE": (
        "Short payment history: {count} settled {invoices} in the last {window} days, {months} months as a customer",
        "付款记录不足：过去 {window} 天仅 {count} 张已结清发票，合作 {months} 个月",
    ),
    "FINANCIALS": (
        "Altman Z'' {z} ({zone})",
        "Altman Z'' 为 {z}（{zone}）",
    ),
}

_BUCKET_LABELS = ("current", "1–{e1}", "{e1p}–{e2}", "{e2p}–{e3}", "more than {e3}")
_BUCKET_LABELS_ZH = ("未到期", " 1–{e1} ", " {e1p}–{e2} ", " {e2p}–{e3} ", "超过 {e3} ")


def money(value: float) -> str:
    """Whole currency units with thousands separators: 48,200."""
    return f"{value:,.0f}"


def _pct(value: float) -> str:
    return f"{value:.0%}"


def _days(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _plural(count: int, zh: bool) -> str:
    return "" if zh else ("invoice" if count == 1 else "invoices")


def render(code: str, language: str, values: dict[str, Any]) -> str:
    """Fill one catalogue entry in the policy's language."""
    english, chinese = CATALOGUE[code]
    return (chinese if language == "zh" else english).format(**values)


def _factor_values(
    factor: Factor, account: Account, f: Features, policy: ScoringPolicy, zh: bool
) -> dict[str, Any]:
    window = policy.windows.trailing_days
    cur = f" {f.currency}" if f.currency else ""
    builders: dict[str, Callable[[], dict[str, Any]]] = {
        "DBT_HIGH": lambda: {"timing": _timing(f, policy, zh), "window": window},
        "LATE_SHARE": lambda: {
            "share": _pct(f.late_share or 0.0),
            "window": window,
            "grace": policy.windows.grace_days,
        },
        "PAST_DUE_NOW": lambda: _past_due_values(f, policy, zh, cur),
        "TREND_WORSE": lambda: {
            "recent": _days(f.recent_dbt),
            "prior": _days(f.prior_dbt),
            "trend": _days(f.trend),
            "recent_days": policy.windows.trend_recent_days,
        },
        "EXTERNAL_SCORE": lambda: {
            "score": f"{f.external_score:g}" if f.external_score is not None else "-",
            "scale": f"{policy.external.scale_max:g}",
            "source": _source(account, zh),
        },
        "DISPUTES": lambda: {
            "share": _pct(f.disputed_share or 0.0),
            "window": window,
            "open": f.open_disputes,
            "disputes": "dispute" if f.open_disputes == 1 else "disputes",
        },
        "OVER_LIMIT": lambda: {
            "exposure": money(f.exposure),
            "limit": money(f.current_limit or 0.0),
            "share": _pct(f.utilisation or 0.0),
            "cur": cur,
        },
        "THIN_FILE": lambda: {
            "count": f.settled_count,
            "invoices": _plural(f.settled_count, zh),
            "window": window,
            "months": f.tenure_days // 30,
        },
        "FINANCIALS": lambda: {"z": f"{f.altman_z:.2f}", "zone": _zone(f.altman_z or 0.0, zh)},
    }
    return builders[factor.code]()


def _timing(f: Features, policy: ScoringPolicy, zh: bool) -> str:
    if policy.windows.early_payment == "floor":
        return f"超出账期 {_days(f.dbt)} 天" if zh else f"{_days(f.dbt)} days beyond terms"
    delay = round(f.payment_delay or 0.0)
    if delay == 0:
        return "在到期日当天" if zh else "on the due date"
    if delay > 0:
        return f"在到期日后 {delay} 天" if zh else f"{delay} days after the due date"
    return f"在到期日前 {-delay} 天" if zh else f"{-delay} days before the due date"


def _source(account: Account, zh: bool) -> str:
    parts = [p for p in (account.external_score_source, _iso(account)) if p]
    if not parts:
        return ""
    return ("（" + "，".join(parts) + "）") if zh else (" (" + ", ".join(parts) + ")")


def _iso(account: Account) -> str:
    return account.external_score_date.isoformat() if account.external_score_date else ""


def _zone(z: float, zh: bool) -> str:
    if z < 1.1:
        return "困境区，低于 1.1" if zh else "distress zone, below 1.1"
    if z < 2.6:
        return "灰色区，1.1–2.6" if zh else "grey zone, 1.1–2.6"
    return "安全区，高于 2.6" if zh else "safe zone, above 2.6"


def _past_due_values(f: Features, policy: ScoringPolicy, zh: bool, cur: str) -> dict[str, Any]:
    e1, e2, e3 = policy.aging.edges
    worst = max((i for i in range(1, 5) if f.bucket_counts[i]), default=0)
    labels = _BUCKET_LABELS_ZH if zh else _BUCKET_LABELS
    label = labels[worst].format(e1=e1, e1p=e1 + 1, e2=e2, e2p=e2 + 1, e3=e3)
    count = f.bucket_counts[worst]
    return {
        "count": count,
        "invoices": _plural(count, zh),
        "bucket": label,
        "amount": money(f.bucket_amounts[worst]),
        "cur": cur,
        "share": _pct(f.overdue_amount / f.exposure if f.exposure > 0 else 0.0),
    }


def _hard_values(
    code: str, band: str, f: Features, policy: ScoringPolicy, zh: bool
) -> dict[str, Any]:
    cur = f" {f.currency}" if f.currency else ""
    if code == HARD_SEVERE:
        return {
            "count": f.severe_count,
            "invoices": _plural(f.severe_count, zh),
            "days": policy.hard_rules.severe_days_past_due,
            "amount": money(f.severe_overdue_amount),
            "cur": cur,
            "band": band,
        }
    if code == HARD_WRITE_OFF:
        return {
            "count": f.write_offs,
            "invoices": _plural(f.write_offs, zh),
            "days": policy.hard_rules.write_off_lookback_days,
            "band": band,
        }
    if code == THIN_FILE_CAP:
        return {"count": f.settled_count, "invoices": _plural(f.settled_count, zh), "band": band}
    return {"band": band}


def _points_above_neutral(factor: Factor, policy: ScoringPolicy) -> float:
    """Score points a factor adds beyond what a customer doing nothing wrong would get.

    For most factors the neutral value scores 0 points. The payment delay is signed by default:
    paying on the due date scores some points (earlier payers are safer), yet is no reason to
    give a customer; only the points above on-time payment are.
    """
    if factor.points is None or factor.points <= 0:
        return 0.0
    neutral = compiled(policy).dbt(0.0) if factor.key == "dbt" else 0.0
    return factor.contribution * max(0.0, factor.points - neutral) / factor.points


def reasons_for(
    account: Account, f: Features, rating: Rating, policy: ScoringPolicy
) -> list[tuple[str, str, float]]:
    """Ordered (code, sentence, points): hard rules first, then the factors adding most points.

    Args:
        account: the customer.
        f: its features.
        rating: its rating.
        policy: the scoring policy (language, number of reasons).

    Returns:
        At most `policy.max_reasons` reasons; points are the score points each one added (for
        the payment delay, beyond paying on the due date).
    """
    zh = policy.language == "zh"
    out: list[tuple[str, str, float]] = []
    for code, band, lift in rating.hard_rules:
        out.append(
            (
                code,
                render(code, policy.language, _hard_values(code, band, f, policy, zh)),
                round(lift, 2),
            )
        )
    if rating.no_history:
        out.append(
            (
                NO_HISTORY,
                render(NO_HISTORY, policy.language, {"score": f"{rating.weighted_score:g}"}),
                0.0,
            )
        )
    elif rating.thin_file_capped:
        band = policy.thin_file.cap_band
        lift = max(0.0, rating.score - rating.weighted_score)
        out.append(
            (
                THIN_FILE_CAP,
                render(
                    THIN_FILE_CAP, policy.language, _hard_values(THIN_FILE_CAP, band, f, policy, zh)
                ),
                round(lift, 2),
            )
        )
    excess = {fac.code: _points_above_neutral(fac, policy) for fac in rating.factors}
    ranked = sorted(
        (fac for fac in rating.factors if fac.available and excess[fac.code] > 0.005),
        key=lambda fac: -excess[fac.code],
    )
    for factor in ranked:
        if len(out) >= policy.max_reasons:
            break
        values = _factor_values(factor, account, f, policy, zh)
        out.append(
            (
                factor.code,
                render(factor.code, policy.language, values),
                round(excess[factor.code], 2),
            )
        )
    return out[: max(policy.max_reasons, len(rating.hard_rules))]
