"""The `dlcli` command line: a thin Typer layer over the Python API.

Every command imports its implementation lazily so that `dlcli --help` stays fast, and runs
through `_run`, which turns a DlcliError into its one-line message and exit code, and Ctrl-C
into exit 130.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import DlcliError

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Deep-learning experiments from YAML recipes, on the CPU.")
analyze_app = typer.Typer(no_args_is_help=True, help="Error analysis and bias/variance of a trained run.")
runs_app = typer.Typer(no_args_is_help=False, invoke_without_command=True,
                       help="The run directories, as tables.")
app.add_typer(analyze_app, name="analyze")
app.add_typer(runs_app, name="runs")


def _flags_as_flags():
    """Typer's help shows a boolean flag's type as <bool>; a flag takes no value: show none."""
    from typer.core import TyperOption
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None:  # older Typer: its help shows flags as flags already
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)
    TyperOption.display_type_rich = display_type_rich


_flags_as_flags()


def _print_version(value: bool):
    if value:
        from . import __version__
        print(f"dlcli {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                          help="Print dlcli's version and exit.")):
    """Deep-learning experiments from YAML recipes, on the CPU."""


SET_HELP = "Override a recipe key by its dotted path, e.g. optimizer.learning_rate=0.01."
RUNS_DIR_HELP = "Where run directories go (default ./runs, or $DLCLI_RUNS)."


def _run(fn, *args, **kwargs):
    from .faults import sigterm_as_ctrl_c
    sigterm_as_ctrl_c()
    try:
        code = fn(*args, **kwargs)
    except DlcliError as err:
        print(f"dlcli: {err}", file=sys.stderr)
        raise typer.Exit(err.exit_code)
    except KeyboardInterrupt:
        print("dlcli: interrupted", file=sys.stderr)
        raise typer.Exit(130)
    except MemoryError as err:
        print(f"dlcli: out of memory: {err}", file=sys.stderr)
        raise typer.Exit(1)
    except OSError as err:
        import errno
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"dlcli: no space left on the device writing {err.filename or 'a file'}",
              file=sys.stderr)
        raise typer.Exit(1)
    raise typer.Exit(code or 0)


@app.command()
def train(recipe: Path = typer.Argument(..., help="The recipe YAML file."),
          set_: List[str] = typer.Option([], "--set", help=SET_HELP),
          runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
          quiet: bool = typer.Option(False, "--quiet", help="No progress bar and no tables."),
          ensemble: int = typer.Option(1, "--ensemble", min=1,
                                       help="Train N models (seeds seed..seed+N-1) and average their probabilities."),
          report: bool = typer.Option(False, "--report", help="Write report.html beside the run at the end."),
          profile: bool = typer.Option(False, "--profile", help="Time each layer over the first steps "
                                       "(on a twin of the model) and print the table after the run's; "
                                       "also written as profile.json in the run.")):
    """Train a recipe, print its errors and diagnosis, save a run directory."""
    from .commands import train_cli
    _run(train_cli, recipe, set_, runs_dir, quiet, ensemble, report_page=report, profile=profile)


@app.command("profile")
def profile_(recipe: Path = typer.Argument(..., help="The recipe YAML file."),
             set_: List[str] = typer.Option([], "--set", help=SET_HELP),
             steps: int = typer.Option(20, "--steps", help="Timed training steps (medians over them)."),
             batch_size: Optional[int] = typer.Option(None, "--batch-size",
                                                      help="Examples per step (default: the recipe's)."),
             warmup: int = typer.Option(2, "--warmup", help="Untimed steps first (the JIT compile)."),
             as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout.")):
    """Where a training step's time goes: each layer's forward and backward ms, the loss, the update."""
    from .render_profile import profile_cli
    _run(profile_cli, recipe, set_, steps, batch_size, warmup, as_json)


@app.command()
def show(recipe: Path = typer.Argument(..., help="The recipe YAML file."),
         set_: List[str] = typer.Option([], "--set", help=SET_HELP)):
    """The model summary: each layer, its output shape and parameter count."""
    from .commands import show_cli
    _run(show_cli, recipe, set_)


@app.command()
def search(recipe: Path = typer.Argument(..., help="The recipe YAML file with a search: section."),
           trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Trials per round."),
           rounds: Optional[int] = typer.Option(None, "--rounds", min=1, help="Coarse-to-fine rounds."),
           keep: Optional[float] = typer.Option(None, "--keep", help="Fraction of trials that set the next round's ranges."),
           workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Local worker processes (default: cores)."),
           scheduler: Optional[str] = typer.Option(None, "--scheduler", help="A Dask scheduler address, e.g. tcp://host:8786."),
           runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
           dry_run: bool = typer.Option(False, "--dry-run", help="Sample and print configurations; train nothing."),
           resume: Optional[Path] = typer.Option(None, "--resume", help="A search directory to finish."),
           as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
           set_: List[str] = typer.Option([], "--set", help=SET_HELP),
           report: bool = typer.Option(False, "--report", help="Write report.html beside the search at the end."),
           worker_timeout: float = typer.Option(60.0, "--worker-timeout", min=0,
                                                help="Seconds to wait for a Dask worker when none "
                                                     "is connected, then exit 1.")):
    """Random search on the right scales, coarse to fine, in parallel."""
    from .search import search_cli
    _run(search_cli, recipe, set_, trials=trials, rounds=rounds, keep=keep, workers=workers,
         scheduler=scheduler, runs_dir=runs_dir, dry_run=dry_run, resume=resume, as_json=as_json,
         report=report, worker_timeout=worker_timeout)


@app.command()
def gradcheck(recipe: Path = typer.Argument(..., help="The recipe YAML file."),
              epsilon: float = typer.Option(1e-7, "--epsilon", help="The two-sided difference step."),
              examples: int = typer.Option(8, "--examples", min=1, help="Training examples in the cost."),
              max_per_tensor: int = typer.Option(200, "--max-per-tensor", min=1,
                                                 help="Entries checked per tensor (sampled beyond this; "
                                                      "the time budget may check fewer)."),
              seconds: float = typer.Option(20.0, "--seconds", min=0,
                                            help="Time budget: every tensor gets checked entries in turn "
                                                 "until the next round would not fit (0: no budget)."),
              seed: Optional[int] = typer.Option(None, "--seed", help="Seed for the sampled entries (default: the recipe's)."),
              params: Optional[Path] = typer.Option(None, "--params", help="A params.npz to check instead of the initial model."),
              as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
              set_: List[str] = typer.Option([], "--set", help=SET_HELP)):
    """Numerical gradient check of the recipe's model and cost."""
    from .gradcheck import gradcheck_cli
    _run(gradcheck_cli, recipe, set_, epsilon=epsilon, examples=examples,
         max_per_tensor=max_per_tensor, seed=seed, params=params, as_json=as_json,
         seconds=seconds or None)


@app.command("course-init")
def course_init(recipe: Path = typer.Argument(..., help="One of the course's recipes, e.g. recipes/cat_4layer.yaml."),
                out: Optional[Path] = typer.Option(None, "--out", help="Where to write (default RECIPE_course_init.npz beside the recipe)."),
                seed: Optional[int] = typer.Option(None, "--seed", help="np.random.seed of the draw (default: the assignment's).")):
    """Write the course's own initial parameters for a recipe, for model.init_from."""
    from .course import course_init_cli
    _run(course_init_cli, recipe, out=out, seed=seed)


@app.command()
def sample(run: Path = typer.Argument(..., help="A language-model run directory."),
           n: int = typer.Option(10, "--n", min=1, help="How many sequences."),
           seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the draws (default: the run's recipe seed)."),
           temperature: float = typer.Option(1.0, "--temperature", help="Divides the logits: < 1 surer, > 1 more varied."),
           max_length: int = typer.Option(50, "--max-length", min=1, help="Tokens at most per sequence."),
           as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout.")):
    """Sequences drawn from a trained language model, one token at a time."""
    from .sample import sample_cli
    _run(sample_cli, run, n=n, seed=seed, temperature=temperature, max_length=max_length,
         as_json=as_json)


@analyze_app.command("errors")
def analyze_errors(run: Path = typer.Argument(..., help="A run directory."),
                   split: str = typer.Option("dev", "--split", help="train | train_dev | dev | test"),
                   tags: Optional[Path] = typer.Option(None, "--tags", help="The tagged errors sheet (CSV) to tally."),
                   sheet: Optional[Path] = typer.Option(None, "--sheet", help="Write a PNG contact sheet of the top mistakes."),
                   top: int = typer.Option(20, "--top", min=1, help="Mistakes to list and draw."),
                   as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout.")):
    """Confusion matrix, precision/recall/F1, the mistakes to tag and each tag's ceiling."""
    from .analyze import errors_cli
    _run(errors_cli, run, split=split, tags=tags, sheet=sheet, top=top, as_json=as_json)


@analyze_app.command("anchors")
def analyze_anchors(run_or_recipe: Path = typer.Argument(..., help="A run directory or a recipe with boxes."),
                    k: Optional[int] = typer.Option(None, "--k", min=1, help="Anchors (default: the recipe's yolo layer's count, else 5)."),
                    seed: int = typer.Option(0, "--seed", help="Seed of the k-means start."),
                    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout.")):
    """Anchor shapes by k-means (1 - IoU) on the training boxes."""
    from .detect.anchors import anchors_cli
    _run(anchors_cli, run_or_recipe, k=k, seed=seed, as_json=as_json)


@analyze_app.command("bias-variance")
def analyze_bias_variance(run: Path = typer.Argument(..., help="A run directory."),
                          human_level_error: Optional[float] = typer.Option(
                              None, "--human-level-error", help="Proxy for Bayes error, e.g. 0.01."),
                          as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout.")):
    """The diagnosis table of a run, recomputed (optionally with a human-level error)."""
    from .analyze import bias_variance_cli
    _run(bias_variance_cli, run, human_level_error=human_level_error, as_json=as_json)


@analyze_app.command("beam")
def analyze_beam(run: Path = typer.Argument(..., help="A run of a sequence-to-sequence recipe."),
                 split: str = typer.Option("dev", "--split", help="train | train_dev | dev | test"),
                 beam: int = typer.Option(3, "--beam", help="The beam width K (1: greedy)."),
                 length_alpha: float = typer.Option(0.7, "--length-alpha",
                                                    help="Length normalization: (1/T_y^alpha) sum log P."),
                 show: int = typer.Option(10, "--show", min=0, help="Errors to list."),
                 as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout.")):
    """Beam search error analysis: for each error, P(y*|x) against P(yhat|x)."""
    from .translate_render import analyze_beam_cli
    _run(analyze_beam_cli, run, split=split, beam=beam, alpha=length_alpha, as_json=as_json, show=show)


@app.command()
def verify(run: Path = typer.Argument(..., help="A trained embedding run (triplet or siamese_binary)."),
           image_a: Path = typer.Argument(..., help="An image."),
           image_b: Path = typer.Argument(..., help="Another image."),
           as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout.")):
    """Face verification (1:1): the distance of two images' encodings, same or not at tau."""
    from .faces_commands import verify_cli
    _run(verify_cli, run, image_a, image_b, as_json=as_json)


@app.command()
def recognize(run: Path = typer.Argument(..., help="A trained embedding run."),
              image: Path = typer.Argument(..., help="The image to recognise."),
              database: Path = typer.Option(..., "--database", help="A folder with one sub-folder of images per identity."),
              top: int = typer.Option(5, "--top", min=1, help="Nearest identities to list."),
              as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout.")):
    """Face recognition (1:K): the nearest identity in the database, or "not recognized"."""
    from .faces_commands import recognize_cli
    _run(recognize_cli, run, image, database, as_json=as_json, top=top)


@app.command()
def style(run: Path = typer.Argument(..., help="A trained conv-net run: its conv layers are the features."),
          content: Path = typer.Option(..., "--content", help="The content image."),
          style_image: Path = typer.Option(..., "--style", help="The style image."),
          size: Optional[tuple[int, int]] = typer.Option(None, "--size", help="W H (default: the content image's size)."),
          alpha: float = typer.Option(10.0, "--alpha", help="Weight of the content cost."),
          beta: float = typer.Option(40.0, "--beta", help="Weight of the style cost."),
          iterations: int = typer.Option(200, "--iterations", min=0, help="Adam steps on the pixels."),
          learning_rate: float = typer.Option(0.01, "--learning-rate", min=0, help="Adam's learning rate."),
          noise: float = typer.Option(0.2, "--noise", min=0, help="Uniform noise added to the content, as a fraction of the pixel range."),
          content_layer: Optional[int] = typer.Option(None, "--content-layer", help="Layer index (default: the last conv layer)."),
          style_layers: Optional[str] = typer.Option(None, "--style-layers", help="i:weight,... (default: every conv layer, equal weights)."),
          save_every: Optional[int] = typer.Option(None, "--save-every", min=1, help="Write G as PNG every K iterations."),
          out: Optional[Path] = typer.Option(None, "--out", help="Folder for the PNGs (default RUN/style)."),
          seed: int = typer.Option(0, "--seed", help="Seed of the initial noise."),
          as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout.")):
    """Neural style transfer: Adam on the pixels of G, the network frozen."""
    from .faces_commands import style_cli
    _run(style_cli, run, content, style_image, size=size, alpha=alpha, beta=beta,
         iterations=iterations, learning_rate=learning_rate, noise=noise, content_layer=content_layer,
         style_layers=style_layers, save_every=save_every, out=out, as_json=as_json, seed=seed)


@app.command()
def predict(run: Path = typer.Argument(..., metavar="RUN_DIR", help="A run directory (or its name under runs/)."),
            inputs: List[str] = typer.Argument(..., metavar="INPUT...",
                                               help="Image files, data files (.npz .h5 .csv IDX) or texts."),
            x_key: Optional[str] = typer.Option(None, "--x", help="The input array (or CSV columns) of a data file."),
            as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
            out: Optional[Path] = typer.Option(None, "--out", help="Write the predictions: FILE.csv, FILE.npz or a directory."),
            top: Optional[int] = typer.Option(None, "--top", min=1, help="The K most probable classes of each input."),
            beam: Optional[int] = typer.Option(None, "--beam", min=1, help="Beam width for sequence outputs (1: greedy)."),
            length_alpha: Optional[float] = typer.Option(None, "--length-alpha", help="Beam search length normalization."),
            attention: Optional[Path] = typer.Option(None, "--attention", help="Write the attention map (PNG)."),
            windows: bool = typer.Option(False, "--windows", help="Slide a crop classifier over a larger image.")):
    """The trained model on new inputs: classes and probabilities (boxes, masks, sequences)."""
    from .predict import predict_cli
    _run(predict_cli, run, inputs, x_key=x_key, as_json=as_json, out=out, top=top, beam=beam,
         length_alpha=length_alpha, attention=attention, windows=windows)


@app.command("report")
def report_(targets: List[str] = typer.Argument(..., metavar="RUN_OR_SEARCH [RUN]...",
                                                help="A run, a search directory, or several runs to compare."),
            out: Optional[Path] = typer.Option(None, "--out", help="The HTML file (default: report.html "
                                               "in the run or search directory; ./report.html for several runs).")):
    """One self-contained HTML page: curves, errors and diagnosis, confusion matrix, mistakes."""
    from .page import report_cli
    _run(report_cli, targets, out)


@runs_app.callback()
def runs_default(ctx: typer.Context,
                 runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP)):
    ctx.obj = runs_dir
    if ctx.invoked_subcommand is None:
        from .commands import runs_list_cli
        _run(runs_list_cli, runs_dir)


# --runs-dir is accepted after the subcommand too (`dlcli runs list --runs-dir X`), as before it
@runs_app.command("list")
def runs_list(ctx: typer.Context,
              runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP)):
    """Every run and search, newest first."""
    from .commands import runs_list_cli
    _run(runs_list_cli, runs_dir or ctx.obj)


@runs_app.command("show")
def runs_show(ctx: typer.Context, run: str = typer.Argument(..., help="A run or search directory, or its name."),
              runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP)):
    """One run: its recipe, errors, diagnosis and learning curve; a search: its trials, best first."""
    from .commands import runs_show_cli
    _run(runs_show_cli, runs_dir or ctx.obj, run)


@runs_app.command("compare")
def runs_compare(ctx: typer.Context, runs: List[str] = typer.Argument(..., help="Two or more runs."),
                 runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP)):
    """Runs side by side: settings that differ, errors and gaps."""
    from .commands import runs_compare_cli
    _run(runs_compare_cli, runs_dir or ctx.obj, runs)


def main():
    app()


if __name__ == "__main__":
    main()
