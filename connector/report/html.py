"""The portfolio report as one self-contained HTML file: inline CSS and SVG, no script, no fetch."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

from connector.report.html_blocks import Page
from connector.report.html_book import book_section, concentration_section, movement_section
from connector.report.html_risk import health_section, stress_section
from connector.report.html_work import limits_section, owners_section
from connector.report.labels import label

CSS = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",
"PingFang SC","Microsoft YaHei",sans-serif;color:#222;margin:0;background:#fff;line-height:1.4}
header,main,footer{max-width:1180px;margin:0 auto;padding:0 20px}
header{padding-top:16px;border-bottom:2px solid #2166ac}
h1{font-size:1.5rem;margin:.2em 0}h2{font-size:1.2rem;margin:1.2em 0 .3em;color:#2166ac}
h3{font-size:1rem;margin:1em 0 .3em}
.meta{color:#555;margin:.2em 0 .6em}.lead{color:#444;margin:.2em 0 .6em}
nav a{margin-right:1em;color:#2166ac}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:.6em 0}
.kpi{border:1px solid #ddd;border-radius:6px;padding:6px 12px;min-width:120px}
.kpi b{display:block;font-size:1.15rem}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px;
align-items:start}
figure.chart-box{margin:0;min-width:0}
figure.chart-box figcaption{font-weight:600;font-size:.9rem;margin:0 0 4px}
svg.chart{display:block;width:100%;height:auto;border:1px solid #eee;border-radius:4px}
.table-wrap{overflow-x:auto;max-width:100%}
.axis-title{font-weight:600}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.86rem;width:100%}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border-bottom:1px solid #e4e4e4;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f5f7fa}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.band{display:inline-block;width:1.4em;text-align:center;border-radius:3px;color:#111}
.note{color:#555;font-style:italic}.warn{color:#b2182b}
section{break-inside:auto;border-bottom:1px solid #eee;padding-bottom:8px}
@page{size:A4;margin:12mm}
@media print{body{font-size:10pt}th{overflow-wrap:anywhere}header,main,footer{max-width:none;padding:0}
nav{display:none}section{break-before:page}section:first-of-type{break-before:auto}
.charts{grid-template-columns:1fr 1fr}svg.chart{border:none}
table,figure{break-inside:avoid}a{color:inherit;text-decoration:none}
.table-wrap{overflow:visible}table{font-size:7.5pt}th,td{padding:2px 3px}
.charts{gap:6px}}
"""

# No network, no script: the policy forbids every fetch, so the file renders the same offline.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


SECTIONS: tuple[tuple[str, Callable[[Page], str]], ...] = (
    ("book", book_section),
    ("movement", movement_section),
    ("concentration", concentration_section),
    ("owners", owners_section),
    ("limits", limits_section),
    ("stress", stress_section),
    ("model_health", health_section),
)


def render_html(figures: dict[str, Any]) -> str:
    """The whole report as one HTML document (UTF-8 text), from `Figures.to_dict()`.

    Args:
        figures: the report's figures (what `report --json` prints).

    Returns:
        The document: inline CSS and SVG only, so it opens offline and prints as it shows.
    """
    p = Page(figures)
    lang = "zh-CN" if p.lang == "zh" else "en"
    title = f"{label('title', p.lang)}: {figures['connection']} ({figures['crm']})"
    nav = "".join(f'<a href="#{key}">{p.t(key)}</a>' for key, _ in SECTIONS)
    meta = (
        f"{p.t('book_as_of')} {escape(str(figures.get('book_as_of') or '–'))} · "
        f"{p.t('report_date')} {escape(figures['report_date'])} · "
        f"{p.t('amounts_in')} {escape(p.currency or '–')} · {p.t('generated')} "
        f"{escape(figures['generated_at'])}"
    )
    sections = "".join(
        f'<section id="{key}" aria-labelledby="{key}-h"><h2 id="{key}-h">{p.t(key)}</h2>'
        f'<p class="lead">{p.t(key + "_lead")}</p>{render(p)}</section>'
        for key, render in SECTIONS
    )
    notes = figures.get("notes") or []
    notes_html = (
        f"<h3>{p.t('notes')}</h3><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"
        if notes
        else ""
    )
    footer = p.t(
        "footer",
        model=figures.get("model_version", ""),
        fingerprint=figures.get("policy_fingerprint", ""),
    )
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{escape(title)}</h1><p class="meta">{meta}</p><nav>{nav}</nav></header>'
        f'<main>{sections}{notes_html}</main><footer><p class="meta">{footer}</p></footer>'
        "</body></html>\n"
    )


__all__ = ["CSP", "SECTIONS", "render_html"]
