"""``polyiap prepare``: build training triplet shards from English image-text data."""

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from polyiap.cli.errors import handle_errors
from polyiap.cli.transfer import console


class RichPrepareProgress:
    """Renders one bar over the source units with the running kept and dropped counts."""

    def __init__(self):
        self.progress = Progress(TextColumn("[bold]preparing"), BarColumn(bar_width=20), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[counts]}"), console=console)
        self.task = None
        self.kept = self.dropped = 0

    def on_start(self, total_units: int, finished_units: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("prepare", total=total_units, completed=finished_units, counts="")
        if finished_units:
            self.progress.console.print(f"resuming: {finished_units} of {total_units} shards are already done")

    def on_unit(self, name: str, kept: int, dropped: int) -> None:
        self.kept, self.dropped = self.kept + kept, self.dropped + dropped
        self.progress.update(self.task, advance=1, counts=f"kept {self.kept}  dropped {self.dropped}  ({name})")

    def on_end(self) -> None:
        self.progress.stop()


@handle_errors
def prepare_command(
    lang: str = typer.Option(..., "--lang", help="target language code (a pack in languages/) or a pack YAML path"),
    source: Path = typer.Option(..., "--source", help="WebDataset folder of *.tar shards, local Hugging Face dataset "
                                                      "folder, or JSONL/CSV file of English captions and images"),
    output: Path = typer.Option(..., "--output", "-o", help="folder for the shards and manifest.json; rerun with "
                                                            "the same options to resume"),
    translation_model: str = typer.Option(None, "--translation-model",
                                          help="hub id or local folder replacing the pack's translation model"),
    english_field: str = typer.Option(None, "--english-field",
                                      help="field of the English caption; default: the first of en, caption, text, txt"),
    image_field: str = typer.Option("image", "--image-field", help="image column of JSONL/CSV and HF sources"),
    shard_size: int = typer.Option(1000, "--shard-size", min=1, help="rows per output shard for JSONL/CSV and HF "
                                                                     "sources (WebDataset shards map one to one)"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="captions per translation batch"),
    num_beams: int = typer.Option(4, "--num-beams", min=1, help="beam width of the translation; 1 is greedy"),
    max_chars: int = typer.Option(300, "--max-chars", min=1, help="drop captions or translations longer than this, "
                                                                  "in characters"),
    device: str = typer.Option(None, "--device", help="torch device of the translation model; default: cuda if "
                                                      "available, else cpu"),
) -> None:
    """Translate English image-text data to LANG and write WebDataset shards of triplets for `polyiap transfer`."""
    import torch

    from polyiap.data.prepare import PrepareOptions, prepare
    from polyiap.data.sources import SourceFields
    from polyiap.packs import TranslationModel, load_pack, pack_path

    pack = load_pack(lang)
    spec = pack.translation_model
    if translation_model is not None:
        spec = (spec.model_copy(update={"model": translation_model, "family": "auto"}) if spec is not None
                else TranslationModel(model=translation_model))
    options = PrepareOptions(shard_size=shard_size, batch_size=batch_size, num_beams=num_beams, max_chars=max_chars,
                             device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
                             fields=SourceFields(english_field, image_field))
    manifest = prepare(pack, source, output, options, spec, RichPrepareProgress(), pack_file=str(pack_path(lang)))
    console.print(f"[green]done[/]: {manifest['samples']} triplets of {manifest['images']} images in "
                  f"{len(manifest['shards'])} shards under {output}; read {manifest['read']} source rows")
    for reason, count in manifest["dropped"].items():
        console.print(f"  dropped {count}: {reason}")
    console.print(f"train on them with `polyiap transfer --lang {pack.code} --data {output} --output RUN`")
