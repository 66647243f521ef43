"""The reproduce command's report: a Markdown table of every condition, the goals, and an image grid."""

from pathlib import Path

import numpy as np
from PIL import Image

COLUMNS = [("accuracy_shape", "shape"), ("accuracy_colour", "colour"), ("accuracy_position", "position"),
           ("accuracy_size", "size"), ("accuracy_all", "all correct"), ("held_out_accuracy_all", "held-out combos"),
           ("agreement", "same-seed agreement"), ("frechet_distance", "Fréchet (judge)")]
GRID_ROWS = ("teacher, English prompts", "pivot (shared queries)", "plain denoising loss", "untrained student")


def mean_spread(results: list[dict], key: str) -> tuple[float, float] | None:
    values = [r["metrics"][key] for r in results if key in r["metrics"]]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values))


def _cell(results: list[dict], key: str) -> str:
    value = mean_spread(results, key)
    if value is None:
        return "–"
    mean, spread = value
    digits = 2 if key == "frechet_distance" else 3
    return f"{mean:.{digits}f} ± {spread:.{digits}f}" if len(results) > 1 else f"{mean:.{digits}f}"


def _loss_cell(runs: list[dict]) -> str:
    """Return the first and last training loss, each the mean over the seeds that trained."""
    trained = [run["losses"] for run in runs if (run.get("losses") or {}).get("first_train_loss") is not None]
    if not trained:
        return "–"
    first = np.mean([losses["first_train_loss"] for losses in trained])
    last = np.mean([losses["last_train_loss"] for losses in trained])
    return f"{first:.3g} → {last:.3g}"


def results_table(results: dict[str, list[dict]]) -> str:
    """Return a Markdown table: one row per condition, mean ± standard deviation over seeds."""
    header = ("| group | condition | seeds | " + " | ".join(label for _, label in COLUMNS)
              + " | train loss (mean) |")
    lines = [header, "|" + "---|" * (len(COLUMNS) + 4)]
    for name, runs in results.items():
        loss = _loss_cell(runs)
        cells = " | ".join(_cell(runs, key) for key, _ in COLUMNS)
        lines.append(f"| {runs[0]['group']} | {name} | {len(runs)} | {cells} | {loss} |")
    return "\n".join(lines)


def goals(results: dict[str, list[dict]]) -> list[tuple[str, str, bool]]:
    """Return (goal, measured, met) for each goal the experiments check."""
    def mean(name: str, key: str) -> float:
        value = mean_spread(results.get(name, []), key)
        return value[0] if value else float("nan")

    teacher, pivot, plain = "teacher, English prompts", "pivot (shared queries)", "plain denoising loss"
    rows = [("teacher all-correct accuracy >= 0.5", f"{mean(teacher, 'accuracy_all'):.3f}",
             mean(teacher, "accuracy_all") >= 0.5)]
    ratios = {label: mean(pivot, key) / max(mean(teacher, key), 1e-9) for key, label in COLUMNS[:4]}
    rows.append(("pivot student >= 95% of the teacher's per-attribute accuracy",
                 ", ".join(f"{label} {ratio:.1%}" for label, ratio in ratios.items()),
                 all(ratio >= 0.95 for ratio in ratios.values())))
    rows.append(("pivot student same-seed agreement >= 0.9", f"{mean(pivot, 'agreement'):.3f}",
                 mean(pivot, "agreement") >= 0.9))
    rows.append(("plain denoising loss clearly below pivot (agreement)",
                 f"{mean(plain, 'agreement'):.3f} vs {mean(pivot, 'agreement'):.3f}",
                 mean(plain, "agreement") < mean(pivot, "agreement") - 0.05))
    sizes = [(name, mean(name, "agreement")) for name in results if name.endswith(" images")]
    values = [value for _, value in sizes]
    rows.append(("agreement rises with data size", ", ".join(f"{n.split(', ')[1]}: {v:.3f}" for n, v in sizes),
                 len(values) > 1 and values[-1] > values[0]))
    return rows


def write_grid(path: Path, real: np.ndarray, images: dict[str, np.ndarray], columns: int = 8,
               scale: int = 4) -> None:
    """Write a PNG: one row per condition (real renders first), one column per evaluation prompt."""
    rows = [real[:columns]] + [images[name][:columns] for name in GRID_ROWS if name in images]
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    image = Image.fromarray(grid)
    image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST).save(path)


ANALYSIS_HEADING = "\n## Analysis\n"


QUICK_GOALS = """
Quick mode trains every stage for a few steps only, to check that it runs; the goals are not expected
to be met here.
"""


def compute_seconds(results: dict[str, list[dict]]) -> float:
    """Return the summed training and scoring time of the results, counting a shared result once."""
    unique = {(run["seed"], run["images"]): run["seconds"] for runs in results.values() for run in runs}
    return sum(unique.values())


def _time_text(results: dict[str, list[dict]], facts: dict) -> str:
    text = (f"{compute_seconds(results) / 60:.1f} min of training and scoring for {facts['seeds']} seed(s) "
            f"of every condition{' (quick mode)' if facts['quick'] else ''}, summed over the stored results")
    if facts.get("reused"):
        text += (f"; this invocation took {facts['seconds'] / 60:.1f} min and reused {facts['reused']} results "
                 "stored by an earlier one, whose machine and thread count may differ")
    return text


def _teacher_text(training: dict) -> str:
    if not training:
        return ""
    minutes = training.get("seconds", 0) / 60
    return (f", trained by `{training.get('command') or 'polyiap miniworld train-teacher'}` for "
            f"{training.get('unet_steps')} UNet steps in {minutes:.0f} min")


def write_report(path: Path, results: dict[str, list[dict]], eval_set, images: dict[str, np.ndarray],
                 facts: dict) -> None:
    """Write the Markdown report and its grid PNG beside it.

    A hand-written section headed ``## Analysis`` in an existing report is kept.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = path.with_name(path.stem + "-grid.png")
    write_grid(grid, eval_set.real, images)
    kept = ""
    if path.is_file() and ANALYSIS_HEADING in path.read_text(encoding="utf-8"):
        kept = ANALYSIS_HEADING + path.read_text(encoding="utf-8").split(ANALYSIS_HEADING, 1)[1]
    language = facts["language"]
    goal_lines = "\n".join(f"| {goal} | {measured} | {'met' if met else 'missed'} |"
                           for goal, measured, met in goals(results))
    prompts = "\n".join(f"| {i + 1} | {eval_set.captions['en'][i]} | {eval_set.captions[language][i]} |"
                        for i in range(min(8, len(eval_set.scenes))))
    text = f"""# The miniature world: results

Written by `{facts['command']}` on {facts['date']}.

- Machine: {facts['machine']}.
- Time: {_time_text(results, facts)}.
- Teacher: `{facts['teacher']}`{_teacher_text(facts.get('teacher_training') or {})}; judge: `{facts['judge']}` (held-out accuracy per attribute: {facts['judge_accuracy']}).
- Evaluation: {facts['eval_count']} prompts of training combinations and {facts['held_out_count']} of held-out
  combinations, target language `{language}`, one image per prompt, PNDM {facts['steps']} steps, guidance {facts['guidance']}.
  The teacher's image for a prompt and every student's image for its translation share the seed.
- Columns: judged accuracy per attribute and all-correct on training combinations, then all-correct on
  the held-out combinations (composition). Same-seed agreement is the share of prompts whose image has
  all four judged attributes equal to the teacher's English image. The Fréchet distance compares the
  judge's features of the generated images with those of real renders of the same scenes (lower is
  better). Values are the mean ± standard deviation over seeds.

{results_table(results)}

## Goals
{QUICK_GOALS if facts['quick'] else ''}
| goal | measured | |
|---|---|---|
{goal_lines}

## Images

![grid]({grid.name})

Rows: real renders, then {', '.join(name for name in GRID_ROWS if name in images)} (seed 0).
Columns: the first prompts of the evaluation set:

| column | English | {language} |
|---|---|---|
{prompts}
"""
    path.write_text(text + kept, encoding="utf-8")
