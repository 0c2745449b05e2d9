"""Train a seed recipe in one framework, deterministically, and record everything.

    python repro/run.py --framework torch --seed 153
    python repro/run.py --framework tf --recipe medmnist_plus --model resnet18 \\
        --dataset medmnist --flag pathmnist --size 28 --data-dir ~/.medmnist --epochs 3
    python repro/run.py --resume runs/torch-medianet-resnet18-digits-s153-r1
    python repro/run.py --framework torch --recipe aecnn --stage 3 --dataset medmnist --flag chestmnist \\
        --size 224 --data-dir ~/.medmnist --crop 196 --eval-resize 196 --init-from RUN1 --init-from RUN2
    python repro/run.py --framework tf --nproc 2 --seed 153          # data-parallel, two processes
    torchrun --nproc-per-node 2 repro/run.py --framework torch --out runs/ddp   # the same, by hand

Each run writes a record directory (repro/record.py) under --runs-dir, or --out.  Options,
data and model are checked before any framework is imported or any training starts.  Only
the chosen framework is loaded in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python repro/run.py` from a checkout
    sys.path.insert(0, str(ROOT))

from parity import frameworks  # noqa: E402
from repro.init_weights import PARITY_INIT_FRAMEWORK  # noqa: E402
from repro.launch import COLLECTIVE_TIMEOUT_S, EXIT_RANK_FAILED, World, launch, world_from_environment  # noqa: E402
from repro.record import FollowerRecord, RunRecord, git_state, package_versions, platform_info, sha256_file  # noqa: E402
from repro.data import datasets  # noqa: E402
from canon import models as spec_models  # noqa: E402
from canon.errors import TwinframeError  # noqa: E402
from canon.files import DiskFullError  # noqa: E402
from repro.recipes import AECNN_REPORT_SIZE, QUIRKS, RECIPES, get_recipe, recipe_of_run  # noqa: E402
from canon.training import MIN_SHARD, PRECISIONS  # noqa: E402

DEFAULT_RECIPE, DEFAULT_MODEL, DEFAULT_DATASET = "medianet", "resnet18", "digits"
DATASETS = ("digits", "medmnist", "medianet_folder", "segmentation")
SEED_MAX = 2**32 - 1
AT_LEAST_ONE = ("threads", "epochs", "batch_size", "input_size", "size", "resize", "crop", "eval_resize", "limit",
                "stop_after_epochs", "nproc", "replicas", "die_after_epochs")
# options whose record value is the resolved recipe's; and those a resume may be given freely
RECIPE_OPTIONS = ("seed", "epochs", "batch_size", "input_size", "procedure", "resize", "crop", "eval_resize", "stage",
                  "quirks")
RESUME_CHANGES_NOTHING = ("resume", "no_progress", "stop_after_epochs", "die_after_epochs")
NEGATED_FLAGS = {"nondeterministic": "deterministic", "no_onnx": "onnx"}  # option -> the setting it turns off
EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}
EPILOG = ("exit status: 0 complete; 1 training diverged; 2 a bad option, bad data, a record that cannot be resumed, "
          "a run directory in use or a full disk (nothing is lost: the last checkpoint stays); 3 stopped on request; "
          f"{EXIT_RANK_FAILED} a rank of a data-parallel run failed (the others were stopped; continue with --resume); "
          "130 / 143 interrupted by SIGINT / SIGTERM (continue with --resume)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python repro/run.py", description=__doc__.split("\n")[0], allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EPILOG)
    p.add_argument("--framework", choices=frameworks.every(),
                   help="the framework that trains (required unless --resume); keras-jax / keras-torch: the Keras "
                        "twin on Keras 3's JAX or torch backend")
    p.add_argument("--seed", type=int, help="seed of everything: init, data order (default: the recipe's)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, help=f"one of {sorted(RECIPES)}")
    p.add_argument("--procedure", choices=("end_to_end", "linear_probing", "knn"), help="medmnist_plus procedure")
    p.add_argument("--quirk", action="append", dest="quirks", choices=sorted(QUIRKS), metavar="NAME",
                   help="reproduce a behaviour of the seed code that is not the default (repeatable): "
                        + "; ".join(f"{name}: {why}" for name, (_, why) in QUIRKS.items()))
    p.add_argument("--stage", type=int, choices=(1, 2, 3),
                   help="aecnn stage: 1 DenseNet-121 classifier, 2 autoencoder, 3 both end to end (needs --init-from "
                        "of a stage-1 and a stage-2 run)")
    p.add_argument("--model", help=f"zoo model (python -m parity list); default: {DEFAULT_MODEL}, or the aecnn stage's")
    p.add_argument("--model-config", default="{}", help='extra model options as JSON, e.g. \'{"head": "global"}\'')
    p.add_argument("--dataset", default=DEFAULT_DATASET, choices=DATASETS,
                   help="digits: scikit-learn's bundled 8x8 digits; medmnist: FLAG[_SIZE].npz in --data-dir; "
                        "medianet_folder: train/ validation/ test/ per-sample npz folders in --data-dir; "
                        "segmentation: segmentation.npz (images and masks) in --data-dir")
    p.add_argument("--flag", help="MedMNIST flag (e.g. pathmnist) for --dataset medmnist")
    p.add_argument("--size", type=int, default=28, help="MedMNIST image size (28, 64, 128, 224)")
    p.add_argument("--data-dir", help="folder of the data files (medmnist, medianet_folder)")
    p.add_argument("--limit", type=int, help="use only the first N samples of each split (quick runs)")
    p.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: the recipe's)")
    p.add_argument("--input-size", type=int, help="pad images centrally to this size (default: the recipe's)")
    p.add_argument("--resize", type=int, help="resize training images (and masks) to this first (default: the recipe's; "
                                               "segmentation 256, aecnn stage 1 256)")
    p.add_argument("--crop", type=int, help="random training crop (default: the recipe's; aecnn 224 / 128 / 896)")
    p.add_argument("--eval-resize", type=int, help="evaluation images resized to this (default: the recipe's)")
    p.add_argument("--init-from", action="append", metavar="RUN_DIR",
                   help="start from the best weights of a complete run (repeat for aecnn stage 3: its stage-1 and "
                        "stage-2 runs)")
    p.add_argument("--runs-dir", default="runs", help="where run directories are created")
    p.add_argument("--out", help="this run's directory (new or empty; the stub of a run interrupted before its first "
                                 "checkpoint is replaced); default: a new one under --runs-dir")
    p.add_argument("--resume", metavar="DIR",
                   help="continue an interrupted run from its last checkpoint (a run stopped before its first one "
                        "starts again); other options may be given only with the values the run was started with")
    p.add_argument("--threads", type=int, default=1, help="intra- and inter-op threads of the framework")
    p.add_argument("--device", default="cpu", help="cpu, or cuda / gpu (cuda:N for the N-th)")
    p.add_argument("--init-weights", metavar="FILE",
                   help="start from these canonical weights (a .safetensors file, e.g. a run's init.safetensors)")
    p.add_argument("--parity", action="store_true",
                   help=f"trajectory parity: start from {PARITY_INIT_FRAMEWORK}'s initialisation for this seed (in "
                        "either framework) and train with dropout off, so the torch and tf runs can be compared "
                        "step by step (python repro/compare.py)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="bfloat16: mixed precision (bfloat16 compute, float32 weights and optimizer state)")
    p.add_argument("--nproc", type=int,
                   help="data-parallel processes on this machine: torch DistributedDataParallel (gloo on CPU, NCCL "
                        "on CUDA) started by torch's own launcher, tf MultiWorkerMirroredStrategy over a loopback "
                        "cluster; every process trains a fixed shard of each batch (default: 1, or torchrun's)")
    p.add_argument("--replicas", type=int, default=1,
                   help="tf only: MirroredStrategy over this many devices of one process (GPUs, or logical CPUs)")
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="data-parallel: BatchNorm takes the statistics of the whole batch over every replica "
                        "(torch SyncBatchNorm, on GPUs only; tf on any device) instead of each shard's own")
    p.add_argument("--nondeterministic", action="store_true", help="leave the framework's default (faster) kernels on")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export of the final model")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--stop-after-epochs", type=int, help=argparse.SUPPRESS)  # tests: interrupt a run on purpose
    p.add_argument("--die-after-epochs", type=int, help=argparse.SUPPRESS)  # tests: the last rank is killed (SIGKILL)
    return p


def check_options(args: argparse.Namespace) -> None:
    """Values no run could use, named before anything is read or written."""
    if args.seed is not None and not 0 <= args.seed <= SEED_MAX:
        raise TwinframeError(f"--seed must be in 0..{SEED_MAX}, got {args.seed}")
    for dest in AT_LEAST_ONE:
        value = getattr(args, dest)
        if value is not None and value < 1:
            raise TwinframeError(f"{option_name(dest)} must be >= 1, got {value}")
    check_device(args.device)
    if (args.nproc or 1) > 1 and args.framework and frameworks.get(args.framework).distributed is None:
        raise TwinframeError(f"--nproc: {frameworks.get(args.framework).title} has no data-parallel engine in "
                             f"twinframe; train it in one process, or use --framework {frameworks.get(args.framework).backend_of}")
    if args.replicas > 1 and args.framework and not frameworks.get(args.framework).replicas_per_process:
        raise TwinframeError(f"--replicas: {frameworks.get(args.framework).title} runs one replica per process; "
                             f"use --nproc")
    if args.sync_batchnorm and args.framework:
        row = frameworks.get(args.framework)
        if args.device == "cpu" and not row.sync_batchnorm_on_cpu:
            raise TwinframeError(f"--sync-batchnorm: {row.title}'s synchronized BatchNorm runs on GPUs only; use "
                                 f"--device cuda, or leave each replica its own statistics")


def check_device(device: str) -> None:
    """Checked without a framework: the name, and that an NVIDIA device node exists for a GPU."""
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda", "gpu") or (index and (kind == "cpu" or not index.isdigit())):
        raise TwinframeError(f"--device {device!r} is unknown; use cpu, cuda (or gpu), or cuda:N")
    if kind != "cpu" and not Path(f"/dev/nvidia{index or 0}").exists():
        raise TwinframeError(f"--device {device}: this machine has no such GPU (no /dev/nvidia{index or 0}); "
                             f"use --device cpu")


def option_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def resolve_settings(args: argparse.Namespace) -> dict:
    """Every option checked and resolved, before anything heavy happens."""
    if args.framework is None:
        raise TwinframeError(f"--framework is required ({', '.join(frameworks.every())}) unless --resume is given")
    overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size),
                                   ("input_size", args.input_size), ("procedure", args.procedure),
                                   ("resize", args.resize), ("crop", args.crop), ("eval_resize", args.eval_resize),
                                   ("stage", args.stage), ("quirks", args.quirks)) if v is not None}
    if args.seed is not None:
        overrides["seed"] = args.seed
    recipe = get_recipe(args.recipe, model=args.model or DEFAULT_MODEL, **overrides)
    model_config = parse_model_config(args.model_config)
    if args.dataset != "digits" and not args.data_dir:
        raise TwinframeError(f"--dataset {args.dataset} needs --data-dir")
    if args.dataset == "medmnist" and not args.flag:
        raise TwinframeError(f"--dataset medmnist needs --flag (one of {', '.join(datasets.MEDMNIST_FLAGS)})")
    model = args.model or (recipe.default_model if recipe.stage else DEFAULT_MODEL)
    if recipe.stage in (2, 3) and model != recipe.default_model:
        raise TwinframeError(f"aecnn stage {recipe.stage} trains {recipe.default_model!r}, not {model!r}")
    init_from = resolved_paths(args.init_from)
    init_sources(recipe, init_from)  # checked now, before anything is built
    init_weights = resolved_path(args.init_weights)
    if init_weights and (init_from or not Path(init_weights).is_file()):
        raise TwinframeError(f"--init-weights {args.init_weights}: " + (
            "give either --init-weights or --init-from" if init_from else "no such file"))
    return {"framework": args.framework, "recipe": recipe.name, "recipe_overrides": {**overrides, "seed": recipe.seed},
            "model": model, "model_config": model_config, "init_from": init_from, "init_weights": init_weights,
            "dataset": args.dataset, "flag": args.flag, "size": args.size, "data_dir": resolved_path(args.data_dir),
            "limit": args.limit, "threads": args.threads, "device": args.device,
            "deterministic": not args.nondeterministic, "precision": args.precision, "parity": args.parity,
            "onnx": exports_onnx(args), "nproc": processes(args), "replicas": args.replicas,
            "sync_batchnorm": args.sync_batchnorm}


def exports_onnx(args: argparse.Namespace) -> bool:
    """The final model's ONNX file, unless --no-onnx or the framework has no exporter here (said)."""
    unavailable = frameworks.get(args.framework).onnx_unavailable
    if unavailable and not args.no_onnx:
        print(f"note: no ONNX export for {frameworks.get(args.framework).title}: {unavailable}", file=sys.stderr)
    return not args.no_onnx and not unavailable


def processes(args: argparse.Namespace) -> int:
    """--nproc, or the world torchrun / TF_CONFIG put this process in; they must agree."""
    world = world_from_environment(args.framework)
    if world.distributed and frameworks.get(args.framework).distributed is None:
        raise TwinframeError(f"a launcher started {world.processes} processes, but {frameworks.get(args.framework).title} "
                             f"has no data-parallel engine in twinframe: run it as one process")
    if world.distributed and args.nproc not in (None, world.processes):
        raise TwinframeError(f"--nproc {args.nproc} but the launcher started {world.processes} processes")
    return world.processes if world.distributed else args.nproc or 1


def replicas_of(settings: dict) -> int:
    """Replicas in all: processes times devices per process (records before data parallelism: 1)."""
    return settings.get("nproc", 1) * settings.get("replicas", 1)


def check_shards(dataset, recipe, replicas: int) -> None:
    """Every replica gets at least MIN_SHARD samples of every batch."""
    if replicas == 1 or recipe.procedure == "knn":
        return
    smallest = min(len(b) for b in datasets.training_batches(len(dataset.splits["train"].labels), recipe.batch_size))
    if smallest < MIN_SHARD * replicas:
        raise TwinframeError(f"a batch of {smallest} samples leaves some of {replicas} replicas fewer than "
                             f"{MIN_SHARD}; choose --batch-size or --limit so that every batch (the last one "
                             f"too) holds at least {MIN_SHARD * replicas}")


def parse_model_config(text: str) -> dict:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise TwinframeError(f"--model-config is not JSON: {error}") from None
    if not isinstance(config, dict):
        raise TwinframeError("--model-config must be a JSON object")
    return config


def resolved_path(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def resolved_paths(paths) -> list[str]:
    return [resolved_path(path) for path in paths or ()]


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, str]:
    """dest -> the option string, for the options written on the command line (not defaults)."""
    given = {}
    for token in argv:
        action = parser._option_string_actions.get(token.split("=", 1)[0]) if token.startswith("--") else None
        if action is not None:
            given[action.dest] = action.option_strings[0]
    return given


def check_resume_options(parser, args: argparse.Namespace, argv: list[str], manifest: dict) -> None:
    """A resumed run keeps the settings it started with: an option given beside --resume must
    say what the record says, or the run is refused (never silently ignored)."""
    for dest, option in given_options(parser, argv).items():
        if dest in RESUME_CHANGES_NOTHING:
            continue
        if dest in ("out", "runs_dir"):
            raise TwinframeError(f"{option} cannot be given with --resume: a resumed run stays in its directory")
        wanted, (key, recorded) = given_value(dest, args), recorded_value(dest, manifest)
        if wanted != recorded:
            shown = option if isinstance(getattr(args, dest), bool) else f"{option} {getattr(args, dest)}"
            raise TwinframeError(f"{shown} differs from the record ({key} {recorded!r}): a resumed run keeps the "
                                 f"settings it started with (start a new run to change them)")


def given_value(dest: str, args: argparse.Namespace):
    value = getattr(args, dest)
    if dest in NEGATED_FLAGS:
        return not value
    converters = {"model_config": parse_model_config, "data_dir": resolved_path, "init_weights": resolved_path,
                  "init_from": resolved_paths}
    return converters[dest](value) if dest in converters else value


def recorded_value(dest: str, manifest: dict) -> tuple[str, object]:
    """The record's key for an option, and its value there."""
    settings, recipe = manifest["settings"], manifest.get("recipe", {})
    if dest in RECIPE_OPTIONS:
        return f"recipe {dest}", recipe.get(dest)
    key = NEGATED_FLAGS.get(dest, dest)
    return key, settings.get(key)


def check_trainable(dataset, recipe) -> None:
    """Data that loads but cannot train is refused before a record exists."""
    for name in ("train", "val", "test"):
        if len(dataset.splits[name].labels) == 0:
            raise TwinframeError(f"the {name} split of {dataset.name!r} is empty; every split needs samples")
    if recipe.procedure != "knn" and len(dataset.splits["train"].labels) < 2:
        raise TwinframeError(f"the training split of {dataset.name!r} holds one sample; training needs at least "
                             f"one batch of two")


def load_dataset(settings: dict):
    kind = settings["dataset"]
    if kind == "digits":
        dataset = datasets.load_digits(seed=0)
    elif kind == "medmnist":
        dataset = datasets.load_medmnist(settings["flag"], settings["size"], settings["data_dir"])
    elif kind == "segmentation":
        dataset = datasets.load_segmentation(Path(settings["data_dir"]) / datasets.SEGMENTATION_FILENAME)
    else:
        dataset = datasets.load_medianet_folder(settings["data_dir"])
    if settings["limit"]:
        dataset = datasets.subset(dataset, {name: settings["limit"] for name in dataset.splits})
    return dataset


def init_sources(recipe, run_dirs: list[str]) -> list[dict]:
    """The complete runs whose best weights start this one, each with the prefix its names get.
    aecnn stage 3 needs exactly one stage-1 and one stage-2 run; any other recipe takes at most
    one run of the same model (fine-tuning)."""
    wanted = dict(recipe.init_from)
    if wanted and len(run_dirs) != len(wanted):
        raise TwinframeError(f"aecnn stage {recipe.stage} starts from the best weights of stage(s) "
                             f"{sorted(wanted)}: give --init-from once for each, got {len(run_dirs)}")
    if not wanted and len(run_dirs) > 1:
        raise TwinframeError(f"recipe {recipe.name!r} starts from at most one --init-from run, got {len(run_dirs)}")
    sources = []
    for run_dir in run_dirs:
        record = RunRecord.open_complete(run_dir, "--init-from")
        manifest = record.manifest()
        stage = manifest["recipe"].get("stage")
        if wanted and stage not in wanted:
            raise TwinframeError(f"--init-from {run_dir}: a run of stage {stage}, but stage {recipe.stage} takes "
                                 f"stages {sorted(wanted)}")
        weights = record.path("best.safetensors")
        if not weights.is_file():
            raise TwinframeError(f"--init-from {run_dir}: no best.safetensors")
        sources.append({"run": run_dir, "stage": stage, "model": manifest["settings"]["model"],
                        "weights": str(weights), "sha256": sha256_file(weights), "prefix": wanted.get(stage, "")})
    stages = [source["stage"] for source in sources]
    if wanted and sorted(stages) != sorted(wanted):
        raise TwinframeError(f"aecnn stage {recipe.stage} needs one run of each of stages {sorted(wanted)}, got {stages}")
    return sources


def start_from(backend, recipe, run_dirs: list[str]) -> list[dict]:
    """Load the --init-from runs' best weights (merged under their prefixes) into the model; the
    load's audit proves every weight of the model was given exactly once."""
    import tempfile

    from canon.weights import load_canonical, merge_prefixed, save_canonical

    sources = init_sources(recipe, run_dirs)
    if sources:
        merged = merge_prefixed([(s["prefix"], load_canonical(s["weights"]), s["run"]) for s in sources])
        with tempfile.TemporaryDirectory() as scratch:
            save_canonical(Path(scratch) / "init.safetensors", merged)
            backend.load_weights(str(Path(scratch) / "init.safetensors"))
    return sources


def start_from_parity_init(backend, model: str, config: dict, seed: int) -> None:
    """Trajectory parity: load the model's initialisation as PARITY_INIT_FRAMEWORK makes it with
    this seed, written by a process of that framework (never two frameworks in one process)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "init.safetensors"
        command = [sys.executable, str(ROOT / "repro" / "init_weights.py"), "--framework", PARITY_INIT_FRAMEWORK,
                   "--model", model, "--config", json.dumps(config), "--seed", str(seed), "--out", str(path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise TwinframeError(f"the {PARITY_INIT_FRAMEWORK} process writing the parity start failed (exit "
                                 f"{result.returncode}):\n{result.stderr[-2000:]}")
        backend.load_weights(str(path))


def check_fit(recipe, dataset, model: str) -> None:
    """The recipe's loss fits the data's task, and its crops fit the images."""
    fits = {"bce_dice": {datasets.SEGMENTATION}, "bce_logits": {datasets.MULTI_LABEL},
            "aecnn_joint": {datasets.MULTI_LABEL}}
    segmentation = dataset.task == datasets.SEGMENTATION
    if (recipe.loss in fits and dataset.task not in fits[recipe.loss]) or (segmentation and recipe.loss != "bce_dice") \
            or (recipe.loss == "cross_entropy" and dataset.task == datasets.MULTI_LABEL):
        raise TwinframeError(f"recipe {recipe.name!r} (loss {recipe.loss}) does not fit the {dataset.task!r} data "
                             f"of {dataset.name!r}")
    height, width = dataset.splits["train"].images.shape[1:3]
    source = recipe.resize or min(height, width)
    if recipe.crop and recipe.crop > source:
        scale = min(height, width) / AECNN_REPORT_SIZE if recipe.stage else None
        hint = (f"; the report's sizes scaled to these images: --crop {_multiple_of_4(recipe.crop * scale)}"
                f"{'' if recipe.resize is None else f' --resize {_multiple_of_4(recipe.resize * scale)}'}"
                f" --eval-resize {_multiple_of_4(recipe.eval_resize * scale)}" if scale else "")
        raise TwinframeError(f"crop {recipe.crop} is larger than the {'resized ' if recipe.resize else ''}training "
                             f"images of {dataset.name!r} ({source} px){hint}")
    if spec_models.resolve(model).family == "aecnn":
        from canon.models.aecnn import check_input_size

        for size in {recipe.crop, recipe.eval_resize} - {None}:
            check_input_size(size, size)


def _multiple_of_4(value: float) -> int:
    return max(4, 4 * round(value / 4))


def model_config(settings: dict, recipe, dataset) -> dict:
    check_fit(recipe, dataset, settings["model"])
    if dataset.task == datasets.SEGMENTATION:
        config = {"in_channels": dataset.channels, "out_channels": 1, **settings["model_config"]}
        spec_models.resolve(settings["model"], **config)
        return config
    outputs = dataset.num_labels if dataset.task == datasets.MULTI_LABEL else dataset.num_classes
    channels = 3 if recipe.to_rgb else dataset.channels
    config = {"num_classes": outputs, "in_channels": channels, **settings["model_config"]}
    size_option = spec_models.fed_size_option(settings["model"])
    if size_option and recipe.input_size and size_option not in config:  # the size the recipe pads to
        config[size_option] = [recipe.input_size, recipe.input_size]
    spec_models.resolve(settings["model"], **config)  # unknown model or option: fails here, before training
    return config


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised where the run stands (BaseException: no library swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum, frame):
    for each in EXIT_INTERRUPTED:  # one interruption is enough: the cleanup is not interrupted again
        signal.signal(each, signal.SIG_IGN)
    raise Interrupted(signum)


def launch_ranks(parser, args: argparse.Namespace, argv: list[str]) -> int | None:
    """``--nproc N`` (or a resumed run of N processes) in a process no launcher started: start
    the N ranks, each this command with its directory named.  None: this process is the run."""
    try:
        if args.resume:
            settings = RunRecord.recorded_settings(args.resume)
            framework, nproc = settings.get("framework"), settings.get("nproc", 1)
        else:
            framework, nproc = args.framework, args.nproc or 1
        if nproc <= 1 or framework is None or world_from_environment(framework).distributed:
            return None
        command = [sys.executable, str(Path(__file__).resolve()), *argv]
        run_dir = args.resume or args.out
        if not args.resume:  # what every rank would refuse, refused once, before any starts
            check_options(args)
            settings = resolve_settings(args)
            recipe = recipe_of_run(settings)
            check_shards(load_dataset(settings), recipe, replicas_of(settings))
        if run_dir is None:  # named here, so that every rank names the same directory
            claimed = RunRecord.claim_next(args.runs_dir, run_stem(settings, recipe))
            claimed.release()  # empty: rank 0 claims it again
            run_dir = str(claimed.dir)
            command += ["--out", run_dir]
    except (TwinframeError, ValueError, KeyError, OSError) as error:
        parser.error(str(error))
    print(f"launching {nproc} {frameworks.get(framework).title} processes for {run_dir}", file=sys.stderr)
    return launch(framework, nproc, command, run_dir)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    launched = launch_ranks(parser, args, argv)
    if launched is not None:
        return launched
    run = Run(parser, args, argv)
    previous = {each: signal.signal(each, _interrupt) for each in EXIT_INTERRUPTED}
    try:
        return run.execute()
    except Interrupted as stop:
        print(f"interrupted ({signal.Signals(stop.signum).name}); {run.where_it_stands()}", file=sys.stderr)
        return EXIT_INTERRUPTED[stop.signum]
    except DiskFullError as error:
        print(f"error: {error}; {run.where_it_stands()}", file=sys.stderr)
        return 2
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def run_stem(settings: dict, recipe) -> str:
    return f"{settings['framework']}-{settings['recipe']}-{settings['model']}-{settings['dataset']}-s{recipe.seed}"


class Run:
    """One invocation: options and data checked, a record claimed (or resumed), trained, finished.
    In a data-parallel run every rank is one; rank 0 alone writes the record (the others hold a
    FollowerRecord, which writes nothing)."""

    def __init__(self, parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]):
        self.parser, self.args, self.argv = parser, args, argv
        self.record: RunRecord | None = None
        self.started = False  # the record exists on disk (a claim alone is given back on failure)
        self.world, self.resuming = World(), False

    def where_it_stands(self) -> str:
        if self.record is None:
            return "nothing was written"
        if not self.started:
            self.record.abandon()
            return "nothing was written"
        return f"continue with: python repro/run.py --resume {self.record.dir}"

    def refuse(self, error: Exception):
        """Exit status 2 naming the culprit; a claimed directory that was never started is given back."""
        if self.record is not None and not self.started:
            self.record.abandon()
        self.parser.error(str(error))

    def execute(self) -> int:
        try:
            checkpoint = self.prepare()
        except DiskFullError:
            raise  # main() says where the run stands
        except (TwinframeError, ValueError, KeyError, OSError) as error:
            self.refuse(error)
        from repro.backends import Backend  # the framework is imported only now
        from repro.loop import LoopState

        settings, recipe = self.settings, self.recipe
        self.backend = Backend(settings["framework"], settings["threads"], settings["device"], settings["deterministic"],
                               distributed=self.world.distributed, replicas=settings.get("replicas", 1),
                               timeout_s=COLLECTIVE_TIMEOUT_S, sync_batchnorm=settings.get("sync_batchnorm", False))
        try:
            self.built = self.backend.build(settings["model"], self.config, recipe.seed,
                                            settings.get("precision", "float32"))
            if self.resuming:
                checkpoint = self.resume_from(checkpoint)
                state, optimizer_state = LoopState(**checkpoint.loop_state), checkpoint.optimizer_state
            else:
                state, optimizer_state = self.start_record(), None
            return self.train_and_finish(state, optimizer_state)
        finally:
            self.backend.close()

    # -- before any framework: every check, and the record directory claimed ----------------
    def prepare(self):
        """Settings, data and model config checked; the record claimed or opened for resume.
        Returns the verified checkpoint to resume from (None: a new start)."""
        args, checkpoint = self.args, None
        check_options(args)
        if args.resume:
            framework = RunRecord.recorded_settings(args.resume).get("framework")
            self.world = world_from_environment(framework) if framework in frameworks.every() else World()
            self.record = (RunRecord.open_for_resume if self.world.writes else FollowerRecord)(args.resume)
            manifest = self.record.manifest()
            check_resume_options(self.parser, args, self.argv, manifest)
            self.settings, self.command = manifest["settings"], manifest.get("command")
            self.started = True  # the record is there already: a failure leaves it as it is
            self.resuming = self.record.has_checkpoint()
            if self.resuming and self.world.writes:  # the other ranks read it once rank 0 has prepared it
                checkpoint = self.record.load_checkpoint()
            elif not self.resuming and self.world.writes:
                print(f"{self.record.dir} stopped before its first checkpoint: starting it again with its recorded "
                      f"settings", file=sys.stderr)
        else:
            self.settings = resolve_settings(args)
            self.world = world_from_environment(args.framework)
            self.command = shlex.join([sys.executable, "repro/run.py", *self.argv])
            if self.world.distributed and not args.out:
                raise TwinframeError("a data-parallel run started by a launcher needs --out DIR: every rank must "
                                     "name the same directory (run.py --nproc N names it itself)")
        self.recipe = recipe_of_run(self.settings)
        self.dataset = load_dataset(self.settings)
        check_trainable(self.dataset, self.recipe)
        check_shards(self.dataset, self.recipe, replicas_of(self.settings))
        self.config = model_config(self.settings, self.recipe, self.dataset)
        if self.record is None:
            self.record = self.claim() if self.world.writes else FollowerRecord(args.out)
        return checkpoint

    def claim(self) -> RunRecord:
        if self.args.out:
            return RunRecord.claim(self.args.out)
        return RunRecord.claim_next(self.args.runs_dir, run_stem(self.settings, self.recipe))

    # -- the framework's part ----------------------------------------------------------------
    def start_record(self):
        from repro.loop import LoopState

        settings, recipe, backend = self.settings, self.recipe, self.backend
        if not backend.writes:  # the engine gives every rank rank 0's starting weights
            return LoopState()
        try:
            sources = start_from(backend, recipe, settings["init_from"])
            if settings.get("init_weights"):
                backend.load_weights(settings["init_weights"])
            elif not sources and settings.get("parity"):  # torch too: its float64 build would draw other values
                start_from_parity_init(backend, settings["model"], self.config, recipe.seed)
        except TwinframeError as error:
            self.refuse(error)
        dataset = self.dataset
        manifest = {
            "command": self.command, "settings": settings, "recipe": recipe.to_dict(), "model_config": self.config,
            "parameters": self.built["parameters"], "seed": recipe.seed, "versions": package_versions(),
            "platform": platform_info(), "environment": backend.environment, "git": git_state(ROOT),
            "init_from": sources,
            "dataset": {"name": dataset.name, "task": dataset.task, "fingerprint": dataset.fingerprint(),
                        "sizes": {k: len(v.labels) for k, v in dataset.splits.items()}},
        }
        record = self.record.start(manifest)
        self.started = True
        record.write_manifest({**record.manifest(), "init": {
            "digest": backend.save_weights(str(record.path("init.safetensors"))),
            "source": "init_from" if sources else settings.get("init_weights")
            or (f"{PARITY_INIT_FRAMEWORK} initialisation (parity)" if settings.get("parity")
                else f"{settings['framework']} initialisation")}})
        return LoopState()

    def resume_from(self, checkpoint):
        """Rank 0 puts the record back to its checkpoint; then every rank loads it (the others
        read it only now, once that is done)."""
        if self.backend.writes:
            removed = self.record.prepare_resume(checkpoint)
            for note in checkpoint.notes + ([f"removed what came after it: {', '.join(removed)}"] if removed else []):
                print(f"resume: {note}", file=sys.stderr)
        self.backend.barrier()
        checkpoint = checkpoint or self.record.load_checkpoint()
        self.backend.load_weights(str(checkpoint.weights))
        if self.backend.writes:
            print(f"resume: from the checkpoint of epoch {checkpoint.epoch} in {self.record.dir}", file=sys.stderr)
        return checkpoint

    def train_and_finish(self, state, optimizer_state) -> int:
        from repro.loop import Progress, knn_evaluate, train

        settings, recipe, record, backend, dataset = self.settings, self.recipe, self.record, self.backend, self.dataset
        trainer = backend.trainer(recipe, dropout=not settings.get("parity", False))
        if optimizer_state is not None:
            trainer.load_optimizer_state(optimizer_state)
        started = time.perf_counter()
        if backend.writes:
            world = f", {replicas_of(settings)} replicas" if replicas_of(settings) > 1 else ""
            print(f"run: {record.dir}  ({settings['framework']}, {recipe.name}, {settings['model']}, {dataset.name}, "
                  f"seed {recipe.seed}{world})", file=sys.stderr)
        if recipe.procedure == "knn":
            summary = {"knn": knn_evaluate(trainer, dataset, recipe)}
            backend.save_weights(str(record.path("final.safetensors")))
        else:
            try:
                state = train(trainer, backend, dataset, recipe, record, state,
                              Progress(not self.args.no_progress and backend.writes),
                              max_epochs_this_call=self.epochs_this_call())
                self.die_if_asked(state)
            except DiskFullError:
                raise  # main() says where the run stands
            except (FloatingPointError, TwinframeError) as error:  # diverged (NaN loss or weights)
                print(f"error: {error}\nthe record {record.dir} stays marked running: it is not a complete run",
                      file=sys.stderr)
                return 1
            except Exception as error:  # a collective broke off: a peer rank is gone (the launcher names it)
                if not self.world.distributed:
                    raise
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                print(f"error: {frameworks.get(settings['framework']).title} rank {self.world.rank} stopped: "
                      f"a collective with the other ranks failed ({first_line[:300]})", file=sys.stderr)
                return 1
            if state.next_epoch < recipe.epochs and not state.stopped_early:
                print(f"stopped after epoch {state.next_epoch} on request; continue with --resume {record.dir}",
                      file=sys.stderr)
                return 3
            if not backend.writes:  # the others wait while rank 0 finishes (below)
                backend.barrier()
                return 0
            summary = finish(backend, trainer, dataset, recipe, record, state, settings)
            backend.barrier()
        summary["wall_s"] = round(time.perf_counter() - started, 3)
        # the proof that this process held one framework only (a library can import one behind our back)
        summary["libraries_loaded"] = frameworks.loaded(sys.modules)
        record.complete(summary)
        if backend.writes:
            print_summary(record, summary)
        return 0

    # -- tests: a rank killed on purpose -------------------------------------------------------
    def epochs_this_call(self) -> int | None:
        if self.args.die_after_epochs is not None and self.is_last_rank():
            return self.args.die_after_epochs
        return self.args.stop_after_epochs

    def is_last_rank(self) -> bool:
        return self.world.rank == self.world.processes - 1

    def die_if_asked(self, state) -> None:
        """--die-after-epochs N: the last rank is killed (SIGKILL, no cleanup) once N epochs'
        checkpoints are on disk, while the others go on into the next epoch."""
        if self.args.die_after_epochs is not None and self.is_last_rank() and state.next_epoch < self.recipe.epochs:
            os.kill(os.getpid(), signal.SIGKILL)


def finish(backend, trainer, dataset, recipe, record, state, settings) -> dict:
    """Final weights and ONNX, then the test split with the best checkpoint's weights."""
    from repro.loop import evaluate_split, make_batch

    final = record.path("final.safetensors")
    backend.save_weights(str(final))
    summary = {"epochs_run": state.next_epoch, "stopped_early": state.stopped_early, "best_epoch": state.best_epoch,
               f"best_{recipe.best}": state.best_value, "final_sha256": sha256_file(final)}
    final_test, logits = evaluate_split(trainer, dataset.splits["test"], recipe, dataset.task)
    summary["final_test"] = {**final_test, **label_metrics(recipe, dataset, logits)}
    if recipe.loss != "mse":  # a reconstruction's predictions are whole images: not kept
        record.save_array("final_test_logits.npy", logits)
    if settings["onnx"]:
        sample, _ = make_batch(dataset.splits["test"], np.arange(2), recipe, dataset.task)
        backend.export_onnx(str(record.path("final.onnx")), list(sample.shape))
        summary["onnx_sha256"] = sha256_file(record.path("final.onnx"))
    backend.load_weights(str(record.path("best.safetensors")))
    best_test, logits = evaluate_split(trainer, dataset.splits["test"], recipe, dataset.task)
    summary["best_test"] = {**best_test, **label_metrics(recipe, dataset, logits)}
    return summary


def label_metrics(recipe, dataset, logits) -> dict:
    """Multi-label: the per-label ROC-AUC table.  chest_multilabel on 15 labels (14 findings and
    "No Finding" last, as the seed) adds normal/abnormal accuracy and disease recall; ChestMNIST's
    14 labels have no "No Finding" column, so there they are not defined."""
    from repro import metrics

    if dataset.task != metrics.MULTI_LABEL or recipe.loss == "mse":
        return {}
    truth, scores = dataset.splits["test"].labels, metrics.sigmoid(logits)
    extra = {"per_label_auc": metrics.per_label_auc(truth, scores)}
    if recipe.name == "chest_multilabel" and truth.shape[1] == 15:
        extra["normal_abnormal_acc"] = metrics.normal_abnormal_accuracy(truth, scores)
        extra["disease_recall"] = metrics.disease_recall(truth, scores)
    return extra


def print_summary(record: RunRecord, summary: dict) -> None:
    lines = [f"run complete: {record.dir}"]
    for key in ("epochs_run", "best_epoch", "stopped_early", "final_sha256", "wall_s"):
        if key in summary:
            lines.append(f"  {key:14s} {summary[key]}")
    for key in ("final_test", "best_test", "knn"):
        if key in summary:
            lines.append(f"  {key:14s} " + "  ".join(f"{k} {v:.4f}" for k, v in summary[key].items()
                                                     if isinstance(v, float)))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
