"""`report.html`: the metrics, the protocol and a grid of prompt/image pairs, in one static page."""

import os
from html import escape
from pathlib import Path

from polyiap.eval.suites import SuiteItem

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: left; }
.warning { background: #fff3cd; border: 1px solid #e0b100; padding: 0.8em 1em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
figure { margin: 0; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 2px; }
.pair img { width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; }
figcaption .given { color: #666; }
"""


def write_report(output: Path, record: dict, items: list[SuiteItem], prompts: dict[int, str],
                 clip_scores: dict[int, float] | None) -> Path:
    """Write ``output/report.html`` for the evaluation ``record`` (the content of metrics.json)."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>polyiap eval: "
             f"{escape(_model_name(record))} on {escape(record['suite']['name'])}</title><style>{_STYLE}</style>"
             f"</head><body><h1>Model {escape(_model_name(record))}, suite {escape(record['suite']['name'])}</h1>",
             _comparability(record), _metrics_table(record), _protocol_table(record),
             f"<h2>First {len(items)} of {record['suite']['count']} captions</h2>"
             "<p>Each pair: the generated image, then the suite's reference image.</p>",
             _grid(items, prompts, clip_scores), "</body></html>"]
    path = output / "report.html"
    temporary = output / ".report.html.tmp"
    temporary.write_text("\n".join(parts), encoding="utf-8")
    os.replace(temporary, path)
    return path


def _model_name(record: dict) -> str:
    model = record["model"]
    return model.get("path") and Path(model["path"]).name or model["kind"]


def _comparability(record: dict) -> str:
    if record["comparable_to_published"]:
        return "<p>Scorers and caption count follow the published protocol.</p>"
    reasons = "".join(f"<li>{escape(reason)}</li>" for reason in record["not_comparable_because"])
    return (f"<div class='warning' id='not-comparable'><strong>Not comparable to published numbers:</strong>"
            f"<ul>{reasons}</ul></div>")


def _metrics_table(record: dict) -> str:
    names = {"fid": "FID (lower is better)", "clip_score": "CLIP score (higher is better)"}
    rows = "".join(f"<tr><th>{names.get(key, key)}</th><td>{value:.3f}</td></tr>"
                   for key, value in record["metrics"].items())
    return f"<h2>Metrics</h2><table id='metrics'>{rows}</table>"


def _protocol_table(record: dict) -> str:
    sampling, suite = record["sampling"], record["suite"]
    facts = {
        "model": record["model"].get("path") or record["model"]["kind"],
        "captions": f"{suite['count']} from {suite['captions']}",
        "sampler": f"{sampling['scheduler']}, {sampling['steps']} steps, guidance {sampling['guidance']}",
        "resolution": f"{sampling['resolution']} px",
        "seeds": f"{sampling['seed']} + caption index",
    }
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in facts.items())
    return f"<h2>Protocol</h2><table>{rows}</table><p>Full protocol and versions: metrics.json.</p>"


def _grid(items: list[SuiteItem], prompts: dict[int, str], clip_scores: dict[int, float] | None) -> str:
    figures = []
    for item in items:
        model_prompt = prompts.get(item.index, "")
        given_line = ""
        if model_prompt and model_prompt != item.caption:
            given_line = f"<br><span class='given'>given: {escape(model_prompt)}</span>"
        score = f"<br>CLIP {clip_scores[item.index]:.1f}" if clip_scores else ""
        figures.append(f"<figure><div class='pair'><img src='images/{item.index:05d}.png' alt='generated'>"
                       f"<img src='reference/{item.index:05d}.png' alt='reference'></div>"
                       f"<figcaption>{escape(item.caption)}{given_line}{score}</figcaption></figure>")
    return f"<div class='grid'>{''.join(figures)}</div>"
