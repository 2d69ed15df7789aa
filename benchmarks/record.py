"""Runs (or resumes) the recorded experiments and writes BENCHMARKS.md from their results.

  python benchmarks/record.py demo                 # the embedded digits pipeline
  python benchmarks/record.py teachers             # LeNet-5 teachers (§4.1.1)
  python benchmarks/record.py zskd_mnist           # Table 1, five students
  python benchmarks/record.py zskd_fashion_mnist   # Table 2, five students
  python benchmarks/record.py transfer_size_mnist  # Figs. 3 and 4 (also _fashion_mnist)
  python benchmarks/record.py table4_mnist         # Table 4, both rows (also _fashion_mnist)
  python benchmarks/record.py uap_mnist            # Table 10 (also uap_fashion_mnist)
  python benchmarks/record.py table7_usps_mnist    # Table 7, three seeds (also _mnist_usps)
  python benchmarks/record.py adapt_beta_ablation  # §4.2.3's β ablation, USPS → MNIST
  python benchmarks/record.py continual_mnist      # Fig. 8's protocol (also _fashion_mnist)
  python benchmarks/record.py cake                 # CAKE, LeNet-5 -> LeNet-5-half, both datasets
  python benchmarks/record.py cake_types           # CAKE's cross-type matrix on MNIST
  python benchmarks/record.py cake_ablation        # CAKE without each of its parts, MNIST
  python benchmarks/record.py cake_vs_di           # CAKE with ZSKD's sizes, both datasets
  python benchmarks/record.py zskd_protocol        # Tables 1-2 under the released protocol
  python benchmarks/record.py spaceshipnet_mnist   # SpaceshipNet, 3 seeds (also _fashion_mnist,
                                                   # _cifar10, and spaceshipnet_ablation)
  python benchmarks/record.py spaceshipnet_table_e # its Table E at CPU scale, CIFAR-10 files
  python benchmarks/record.py headline             # only rewrite the headline tables

Each experiment is one `jaxinv` command with a fixed workdir under runs/ (a finished workdir
resumes instantly). Its results.json is kept, with the command, date and processor, in
benchmarks/results/<section>.json; BENCHMARKS.md's headline tables (our figure next to the
paper's) and its detail sections are generated from those files alone, so nothing is typed by
hand. Variants, ablations and the figures of jaxinv 0.1 are in benchmarks/APPENDIX.md.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import glob
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from jaxinv import figures as figures_lib  # noqa: E402
from jaxinv import report  # noqa: E402

BENCHMARKS = os.path.join(REPO, "BENCHMARKS.md")
RESULTS = os.path.join(REPO, "benchmarks", "results")
_FIVE_SEEDS = "--config.distill.num_seeds=5"
# section -> (command, what it reproduces)
EXPERIMENTS = {
    "demo": ("jaxinv demo --workdir runs/demo", "the embedded digits pipeline"),
    "zskd_mnist": (f"jaxinv run zskd.py:mnist --workdir runs/zskd_mnist {_FIVE_SEEDS}",
                   "Table 1: MNIST, LeNet-5 → LeNet-5-half, 24,000 DIs"),
    "zskd_fashion_mnist": (f"jaxinv run zskd.py:fashion_mnist --workdir runs/zskd_fashion_mnist "
                           f"{_FIVE_SEEDS}", "Table 2: Fashion-MNIST, 48,000 DIs"),
    "transfer_size_mnist": ("jaxinv run transfer_size.py:mnist --workdir runs/transfer_size_mnist",
                            "Figs. 3 and 4 on MNIST"),
    "transfer_size_fashion_mnist": ("jaxinv run transfer_size.py:fashion_mnist "
                                    "--workdir runs/transfer_size_fashion_mnist",
                                    "Figs. 3 and 4 on Fashion-MNIST"),
    **{f"robustness_{name}": (f"jaxinv run robustness.py:{name} --workdir runs/robustness_{name}",
                              f"Table 4: {label}")
       for name, label in (
           ("mnist", "MNIST, non-robust teacher and its students"),
           ("mnist_robust", "MNIST, PGD-trained teacher and its students"),
           ("fashion_mnist", "Fashion-MNIST, non-robust teacher and its students"),
           ("fashion_mnist_robust", "Fashion-MNIST, PGD-trained teacher and its students"))},
    "uap_mnist": ("jaxinv run uap.py:mnist --workdir runs/uap_mnist",
                  "Table 10: UAPs from DIs and CIs, MNIST"),
    "uap_fashion_mnist": ("jaxinv run uap.py:fashion_mnist --workdir runs/uap_fashion_mnist",
                          "Table 10: UAPs from DIs and CIs, Fashion-MNIST"),
}
_DIRECTIONS = {"usps_mnist": "USPS → MNIST", "mnist_usps": "MNIST → USPS"}
_ADAPT_SEEDS = (0, 1, 2)
_BETAS = {"": "β ∈ {0.01, 0.1}", "_high_beta": "β ∈ {0.1, 1.0}"}
for _direction, _label in _DIRECTIONS.items():
    for _suffix, _betas in _BETAS.items():
        # The β ablation adapts on DIs only: its source model and real-source ADDA are the
        # main run's.
        _references = " --config.adapt.references=()" if _suffix else ""
        for _seed in _ADAPT_SEEDS:
            _name = f"adapt_{_direction}{_suffix}_seed{_seed}"
            EXPERIMENTS[_name] = (
                f"jaxinv run adapt.py:{_direction}{_suffix} --workdir runs/{_name} "
                f"--config.seed={_seed}{_references}",
                f"Table 7: {_label}, ADDA with DIs of {_betas}, seed {_seed}")
_CONTINUAL_DATASETS = ("mnist", "fashion_mnist")
_CONTINUAL_SEEDS = (0, 1, 2)
for _dataset in _CONTINUAL_DATASETS:
    for _seed in _CONTINUAL_SEEDS:
        EXPERIMENTS[f"continual_{_dataset}_seed{_seed}"] = (
            f"jaxinv run continual.py:{_dataset} --workdir runs/continual_{_dataset}_seed{_seed} "
            f"--config.seed={_seed}", f"Fig. 8's protocol on {_dataset}, seed {_seed}")
_CAKE_DATASETS = ("mnist", "fashion_mnist")
_CAKE_TYPES = ("mlp", "lenet5", "resnet8", "vit")
_CAKE_ABLATIONS = {"all_parts": "all parts (the reference)",
                   "no_contrastive": "without the contrastive term",
                   "no_noise": "without noise (one step size for every set)",
                   "no_tv": "without the TV prior",
                   "langevin": "with explicit Langevin noise (the poster's variant)"}
_THREE_SEEDS = "--config.distill.num_seeds=3"
EXPERIMENTS["cake_mnist_authors_student"] = (
    f"jaxinv run cake.py:mnist_authors_student --workdir runs/cake_mnist_authors_student "
    f"{_THREE_SEEDS}", "CAKE on MNIST with the authors' student optimiser (SGD 0.5)")
for _dataset in _CAKE_DATASETS:
    EXPERIMENTS[f"cake_{_dataset}"] = (
        f"jaxinv run cake.py:{_dataset} --workdir runs/cake_{_dataset} {_THREE_SEEDS}",
        f"CAKE, LeNet-5 -> LeNet-5-half on {_dataset}")
    EXPERIMENTS[f"cake_{_dataset}_di_protocol"] = (
        f"jaxinv run cake.py:{_dataset}_di_protocol --workdir runs/cake_{_dataset}_di_protocol "
        f"{_THREE_SEEDS}", f"CAKE with zskd.py's sample count and distillation, {_dataset}")
for _type in _CAKE_TYPES:
    EXPERIMENTS[f"cake_types_{_type}"] = (
        f"jaxinv run cake.py:types_{_type} --workdir runs/cake_types_{_type}",
        f"CAKE's cross-type matrix, the {_type} teacher's row")
for _variant, _label in _CAKE_ABLATIONS.items():
    EXPERIMENTS[f"cake_mnist_{_variant}"] = (
        f"jaxinv run cake.py:mnist_{_variant} --workdir runs/cake_mnist_{_variant} "
        f"{_THREE_SEEDS}", f"CAKE {_label}, MNIST")
# DeepInversion and CMI (issue 25): section -> config, on the BN CNN of each dataset.
_BN_METHODS = {"bn_impressions": ("bn_impressions.py:{}", "Data Impressions"),
               "deepinversion": ("deepinversion.py:{}", "DeepInversion"),
               "adi": ("deepinversion.py:{}_adi", "ADI (DeepInversion + competition)"),
               "cmi": ("cmi.py:{}", "CMI")}
_CMI_ABLATIONS = {"no_contrastive": "w/o contrastive loss", "no_generator": "w/o generator",
                  "no_adv": "w/o decision-adversarial loss"}
# The CMI paper's Table 1 (WRN-40-2 -> WRN-16-1, CIFAR-10; ADI its re-implementation) and
# Table 2 (the same pair), the figures this comparison checks the ranking of.
_CMI_PAPER = {"adi": 83.04, "cmi": 90.01, "no_contrastive": 85.97, "no_generator": 83.65,
              "no_adv": 87.71}
_BN_DATASETS = ("mnist", "fashion_mnist", "cifar10")
# spaceshipnet.py:cifar10_images_<n>: Table E's numbers of optimised images.
_TABLE_E_IMAGES = (50, 250, 500, 1000, 2500)
for _dataset in _BN_DATASETS:
    for _method, (_spec, _label) in _BN_METHODS.items():
        EXPERIMENTS[f"{_method}_{_dataset}"] = (
            f"jaxinv run {_spec.format(_dataset)} --workdir runs/{_method}_{_dataset} "
            f"{_THREE_SEEDS}", f"{_label} on the BN CNN, {_dataset}")
for _variant, _label in _CMI_ABLATIONS.items():
    EXPERIMENTS[f"cmi_mnist_{_variant}"] = (
        f"jaxinv run cmi.py:mnist_{_variant} --workdir runs/cmi_mnist_{_variant} "
        f"{_THREE_SEEDS}", f"CMI {_label}, MNIST")
# Data from Model (issue 24): one chain per origin.
_DFM_ORIGINS = {"mnist": "non-robust M0", "mnist_robust": "l2-robust M0"}
for _origin, _label in _DFM_ORIGINS.items():
    EXPERIMENTS[f"dfm_{_origin}"] = (f"jaxinv run dfm.py:{_origin} --workdir runs/dfm_{_origin}",
                                     f"Data from Model's chain from the {_label}, MNIST")
# ZSKD's reporting protocol (issue 27): our default, scored on the test set about once an epoch
# (24,000 / 128 and 48,000 / 128 steps), and the released code's procedure and recipe.
_ZSKD_EPOCH_STEPS = {"mnist": 188, "fashion_mnist": 375}
for _dataset, _epoch in _ZSKD_EPOCH_STEPS.items():
    EXPERIMENTS[f"zskd_{_dataset}_protocol"] = (
        f"jaxinv run zskd.py:{_dataset} --workdir runs/zskd_{_dataset}_protocol {_FIVE_SEEDS} "
        f"--config.distill.evaluate_every={_epoch}",
        f"zskd.py's default on {_dataset}, scored on the test set every {_epoch} steps")
    EXPERIMENTS[f"zskd_{_dataset}_released"] = (
        f"jaxinv run zskd.py:{_dataset}_released --workdir runs/zskd_{_dataset}_released",
        f"the released ZSKD code's procedure and distillation on {_dataset}")
    EXPERIMENTS[f"zskd_{_dataset}_released_images"] = (
        f"jaxinv run zskd.py:{_dataset}_released_images "
        f"--workdir runs/zskd_{_dataset}_released_images "
        f"--config.distill.evaluate_every={_epoch}",
        f"the released ZSKD code's images on {_dataset}, distilled by zskd.py's default")
# SpaceshipNet (issue 26): a seed is a whole run, since the student trains inside synthesis.
_SPACESHIP_VARIANTS = {"": "SpaceshipNet", "_no_cfe": "SpaceshipNet without CFE",
                       "_no_msarc": "SpaceshipNet without mSARC",
                       "_code": "SpaceshipNet with the authors' code's settings"}
for _dataset in _BN_DATASETS:
    for _variant, _label in _SPACESHIP_VARIANTS.items():
        if _variant and _dataset != "mnist":
            continue
        for _seed in range(1 if _variant == "_code" else 3):
            EXPERIMENTS[f"spaceshipnet_{_dataset}{_variant}_seed{_seed}"] = (
                f"jaxinv run spaceshipnet.py:{_dataset}{_variant} "
                f"--workdir runs/spaceshipnet_{_dataset}{_variant}_seed{_seed} "
                f"--config.synthesis.seed={_seed}", f"{_label} on the BN CNN, {_dataset}")
# Seed 0's pool distilled afterwards as the other methods' sets are (three students).
EXPERIMENTS["spaceshipnet_mnist_pool_kd"] = (
    f"jaxinv run spaceshipnet.py:mnist_pool_kd --workdir runs/spaceshipnet_mnist_pool_kd "
    f"{_THREE_SEEDS}", "SpaceshipNet's pool distilled afterwards, mnist")
# Experiments that distil the set another one synthesised: section -> that section, whose
# synthesis/ folder is copied into the experiment's workdir before it runs.
REUSED_SYNTHESIS = {"spaceshipnet_mnist_pool_kd": "spaceshipnet_mnist_seed0",
                    **{f"zskd_{dataset}_released_images": f"zskd_{dataset}_released"
                       for dataset in _ZSKD_EPOCH_STEPS}}
for _images in _TABLE_E_IMAGES:
    EXPERIMENTS[f"spaceshipnet_cifar10_images_{_images}"] = (
        f"jaxinv run spaceshipnet.py:cifar10_images_{_images} "
        f"--workdir runs/spaceshipnet_cifar10_images_{_images}",
        f"SpaceshipNet's Table E at {_images} optimised images, CIFAR-10 files")
# Sections recorded together by one command: Table 4's rows of one dataset; Table 7's seeds of
# one direction; the β ablation of §4.2.3.
GROUPS = {f"table4_{dataset}": (f"robustness_{dataset}", f"robustness_{dataset}_robust")
          for dataset in ("mnist", "fashion_mnist")}
GROUPS.update({f"table7_{direction}": tuple(f"adapt_{direction}_seed{seed}"
                                            for seed in _ADAPT_SEEDS)
               for direction in _DIRECTIONS})
GROUPS.update({f"continual_{dataset}": tuple(f"continual_{dataset}_seed{seed}"
                                              for seed in _CONTINUAL_SEEDS)
               for dataset in _CONTINUAL_DATASETS})
GROUPS["cake"] = ("cake_mnist_authors_student",
                  *(f"cake_{dataset}" for dataset in _CAKE_DATASETS))
GROUPS["cake_types"] = tuple(f"cake_types_{t}" for t in _CAKE_TYPES)
GROUPS["cake_ablation"] = tuple(f"cake_mnist_{variant}" for variant in _CAKE_ABLATIONS)
GROUPS["cake_vs_di"] = tuple(f"cake_{dataset}_di_protocol" for dataset in _CAKE_DATASETS)
# USPS -> MNIST only: the direction the paper's Fig. 6 shows, and what 2 CPU cores allowed.
GROUPS["adapt_beta_ablation"] = tuple(f"adapt_usps_mnist_high_beta_seed{seed}"
                                      for seed in _ADAPT_SEEDS)
GROUPS.update({f"bn_methods_{dataset}": tuple(f"{method}_{dataset}" for method in _BN_METHODS)
               for dataset in _BN_DATASETS})
GROUPS["dfm"] = tuple(f"dfm_{origin}" for origin in _DFM_ORIGINS)
GROUPS["zskd_protocol"] = tuple(f"zskd_{dataset}_{variant}" for dataset in _ZSKD_EPOCH_STEPS
                               for variant in ("protocol", "released", "released_images"))
GROUPS.update({f"spaceshipnet_{dataset}": tuple(
    f"spaceshipnet_{dataset}_seed{seed}" for seed in range(3)) for dataset in _BN_DATASETS})
# The ablations need three seeds to make a claim; the code's settings are measured once, a
# reference point beside the supplement's defaults.
GROUPS["spaceshipnet_ablation"] = (
    *(f"spaceshipnet_mnist{variant}_seed{seed}" for variant in ("_no_cfe", "_no_msarc")
      for seed in range(3)), "spaceshipnet_mnist_code_seed0")
GROUPS["spaceshipnet_table_e"] = tuple(f"spaceshipnet_cifar10_images_{images}"
                                      for images in _TABLE_E_IMAGES)
GROUPS["cmi_ablation"] = tuple(f"cmi_mnist_{variant}" for variant in _CMI_ABLATIONS)
TEACHERS = {"teacher_mnist_plain": "mnist_plain", "teacher_fashion_mnist": "fashion_mnist",
            "teacher_usps": "usps"}
# Figures of the Data Impressions paper that have no `paper` block in a config.
_PAPER_TEACHERS = {"mnist": 99.34, "fashion_mnist": 90.84}


def _processor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def _workdir(command: str) -> str:
    words = shlex.split(command)
    return words[words.index("--workdir") + 1]


def _copy_reused_synthesis(section: str, command: str) -> None:
    """Gives `section`'s workdir a copy of the synthesis/ folder of the run it reuses."""
    source_section = REUSED_SYNTHESIS[section]
    source = os.path.join(REPO, _workdir(EXPERIMENTS[source_section][0]), "synthesis")
    target = os.path.join(REPO, _workdir(command), "synthesis")
    if os.path.isdir(target):
        return
    if not os.path.exists(os.path.join(source, "transfer_set.npz")):
        raise SystemExit(f"{section} distils the set of {source_section}, which is not "
                         f"finished: run `python benchmarks/record.py {source_section}` first.")
    # Copied under another name first, so that an interrupted copy is never taken for one.
    partial = f"{target}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    os.replace(partial, target)


def record(section: str, command: str) -> dict:
    """Runs `command` (resuming), keeps its results with command, date and processor."""
    if section in REUSED_SYNTHESIS:
        _copy_reused_synthesis(section, command)
    subprocess.run(shlex.split(command), check=True, cwd=REPO)
    results_path = os.path.join(REPO, _workdir(command), "results.json")
    entry = {"command": command, "date": datetime.date.today().isoformat(),
             "processor": _processor(), "results": report.read_json(results_path)}
    report.write_json(os.path.join(RESULTS, f"{section}.json"), entry)
    return entry


def _load(section: str) -> dict | None:
    path = os.path.join(RESULTS, f"{section}.json")
    return report.read_json(path) if os.path.exists(path) else None


def _refreshed_figure(name: str, draw: Callable[[str], None]) -> str | None:
    """benchmarks/figures/`name`, redrawn by `draw(path)` when the recorded runs it needs are
    in runs/ (else `draw` leaves it alone), or the figure drawn when they were recorded: runs/
    is not committed, and a fresh checkout rewriting BENCHMARKS.md keeps its figures. None if
    there is no figure."""
    figure = os.path.join("benchmarks", "figures", name)
    draw(os.path.join(REPO, figure))
    return figure if os.path.exists(os.path.join(REPO, figure)) else None


def _copy_if_present(source: str) -> Callable[[str], None]:
    """A `draw` for `_refreshed_figure` that copies a figure a run drew, when it is there."""
    def draw(path: str) -> None:
        if os.path.exists(source):
            shutil.copyfile(source, path)
    return draw


def _beyond_spread(a: tuple[float, float], b: tuple[float, float], seeds: int = 3) -> bool:
    """Whether two (mean, sd) summaries differ by more than the larger spread: a claim this
    project makes only with three seeds or more on each side (`seeds`: the fewer side's)."""
    return seeds >= 3 and abs(a[0] - b[0]) > max(a[1], b[1])


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def _student(results: dict) -> str:
    seeds = results["distill"].get("student_seeds")
    if seeds:
        return (f"{seeds['mean']:.2f} (mean of {len(seeds['seeds'])}; sd {seeds['sd']:.2f}, "
                f"{seeds['min']:.2f}–{seeds['max']:.2f})")
    return _fmt(results["distill"]["student_test_accuracy"])


def headline() -> str:
    """The headline table of the Data Impressions paper, from benchmarks/results/."""
    rows = []
    for section in ("zskd_mnist", "zskd_fashion_mnist"):
        entry = _load(section)
        what = EXPERIMENTS[section][1]
        if entry is None:
            rows.append((what, "", "not yet recorded with jaxinv 0.2; jaxinv 0.1's figures are "
                         f"in benchmarks/APPENDIX.md, section `{section}`",
                         f"`python benchmarks/record.py {section}`", ""))
            continue
        results, paper = entry["results"], entry["results"].get("paper", {})
        cells = [("ZSKD student", paper.get("zskd"), _student(results)),
                 ("teacher", paper.get("teacher"), _fmt(results["teacher_test_accuracy"])),
                 ("Student-KD (real data)", paper.get("student_kd"),
                  _fmt(results["distill"].get("student_kd_test_accuracy"))),
                 ("Student-CE (real labels)", paper.get("student_ce"),
                  _fmt(results["distill"].get("student_ce_test_accuracy")))]
        for label, paper_value, ours in cells:
            rows.append((f"{what}: {label}", _fmt(paper_value), ours, f"`{entry['command']}`",
                         entry["date"]))
    demo = _load("demo")
    if demo is not None:
        di = demo["results"]["data_impressions"]
        ci = demo["results"]["class_impressions"]
        for label, value in (("teacher", di["teacher_test_accuracy"]),
                             ("Student-KD (real images)",
                              di["distill"]["student_kd_test_accuracy"]),
                             ("student on Data Impressions",
                              di["distill"]["student_test_accuracy"]),
                             ("student on Class Impressions",
                              ci["distill"]["student_test_accuracy"])):
            rows.append((f"demo (digits, not in the paper): {label}", "—", _fmt(value),
                         f"`{demo['command']}`", demo["date"]))
    return ("## Data Impressions (Nayak et al., TPAMI 2021): test accuracy (%)\n\n"
            "Each figure is a final model on the real test set. The configs are sized for 2 CPU "
            "cores (200 synthesis steps instead of the paper's 1500, 10,000 distillation steps); "
            "see each config's docstring. Their departures from the paper (the pixel prior, "
            "8x8 starting noise, the distillation length) were chosen by jaxinv 0.1 on test "
            "accuracy, with no validation split held out (benchmarks/APPENDIX.md): choosing "
            "them again on a validation split is still to do.\n\n"
            + report.markdown_table(["experiment", "paper", "jaxinv", "command", "date"], rows))


_TABLE4_ROWS = (("", "teacher", "non-robust teacher"),
                ("", "student", "student on DIs from it"),
                ("_robust", "teacher", "PGD-trained teacher"),
                ("_robust", "student", "student on DIs from it"))
_TABLE4_FIGURES = (("natural_accuracy",), ("fgsm", "accuracy"), ("fgsm", "fooling_rate"),
                   ("ifgsm", "accuracy"), ("ifgsm", "fooling_rate"), ("pgd", "accuracy"),
                   ("pgd", "fooling_rate"))


def table4(dataset: str) -> str | None:
    """Table 4's rows of `dataset`, ours next to the paper's, and the ε-curve figure."""
    entries = {suffix: _load(f"robustness_{dataset}{suffix}") for suffix in ("", "_robust")}
    if any(entry is None for entry in entries.values()):
        return None
    rows, curves = [], {}
    for suffix, who, label in _TABLE4_ROWS:
        figures = entries[suffix]["results"]["robustness"]
        paper = entries[suffix]["results"].get("paper", {}).get(who)
        if who == "teacher":
            ours = [_nested(figures["teacher"], keys) for keys in _TABLE4_FIGURES]
            cells = [f"{value:.2f}" for value in ours]
            curves[label] = figures["teacher"]["pgd_eps_curve"]
        else:
            summary = figures["students"]["summary"]
            cells = [f"{summary['.'.join(keys)]['mean']:.2f} ± {summary['.'.join(keys)]['sd']:.2f}"
                     for keys in _TABLE4_FIGURES]
            curves[f"students of the {rows[-1][0]} (mean)"] = summary["pgd_eps_curve"]["mean"]
        rows.append([label] + [f"{cell} ({_fmt(p)})" for cell, p in
                               zip(cells, paper or [None] * len(cells), strict=True)])
    first = entries[""]["results"]["robustness"]
    figure = os.path.join("benchmarks", "figures", f"table4_{dataset}_pgd_eps.png")
    figures_lib.accuracy_curves(first["eps_curve"], curves, os.path.join(REPO, figure),
                                xlabel="ε (l∞)", ylabel="PGD-40 accuracy (%)",
                                title=f"PGD accuracy against ε, {dataset} "
                                      f"({first['eps_curve_images']} test images)")
    commands = " and ".join(f"`{entry['command']}`" for entry in entries.values())
    pgd = {suffix: entries[suffix]["results"]["robustness"]["students"]["summary"]["pgd.accuracy"]
           for suffix in entries}
    paper_pgd = {suffix: entries[suffix]["results"].get("paper", {}).get("student", [None] * 7)[5]
                 for suffix in entries}
    finding = (f"Under PGD, students distilled on DIs from the PGD-trained teacher keep "
               f"{pgd['_robust']['mean']:.2f} ± {pgd['_robust']['sd']:.2f} % against "
               f"{pgd['']['mean']:.2f} ± {pgd['']['sd']:.2f} % for those of the non-robust "
               f"teacher (paper: {_fmt(paper_pgd['_robust'])} against {_fmt(paper_pgd[''])}).")
    header = ["model", "A_nat", "FGSM A_adv", "FGSM F.R.", "iFGSM A_adv", "iFGSM F.R.",
              "PGD A_adv", "PGD F.R."]
    return (f"## Table 4 ({dataset}): adversarial robustness of DI-distilled students, % "
            f"(paper in parentheses)\n\n"
            f"Recorded {entries['']['date']} on {entries['']['processor']} by {commands} "
            f"(`python benchmarks/record.py table4_{dataset}`). l∞ ε = {first['eps']:g} (the "
            f"paper does not state ε; this is the community's standard), on "
            f"{first['num_test_images']} test images. FGSM: one step of ε; iFGSM: 10 steps of "
            f"ε/10; PGD: 40 steps of 2.5ε/40 from a random start. Students: mean ± sd over "
            f"seeds {first['students']['seeds']}, each distilled on the same DIs. Sizes: "
            f"robustness.py's docstring.\n\n"
            + report.markdown_table(header, rows)
            + f"\n\n{finding}\n\n![PGD accuracy against ε]({figure})")


_TABLE10_SOURCES = (("uniform", "uniform noise in the ε-ball (floor, untrained)"),
                    ("class_impressions", "Class Impressions (AAA)"),
                    ("data_impressions", "Data Impressions"),
                    ("real", "real training images (ceiling)"))


def table10(dataset: str) -> str | None:
    """Table 10's column of `dataset` at every ε, ours next to the paper's."""
    entry = _load(f"uap_{dataset}")
    if entry is None:
        return None
    results, paper = entry["results"]["uap"], entry["results"].get("paper", {})
    rows, findings = [], []
    for eps, by_source in results["by_eps"].items():
        for source, label in _TABLE10_SOURCES:
            if source not in by_source:
                continue
            figures = by_source[source]
            if source == "uniform":
                fooling, accuracy = (f"{figures['fooling_rate']:.2f}",
                                     f"{figures['accuracy']:.2f}")
            else:
                fooling = (f"{figures['fooling_rate']['mean']:.2f} ± "
                           f"{figures['fooling_rate']['sd']:.2f}")
                accuracy = f"{figures['accuracy']['mean']:.2f}"
            paper_value = paper.get(source) if eps == "10/255" else None
            rows.append((eps, label, fooling, accuracy, _fmt(paper_value)))
        if "di_ahead_of_ci_beyond_spread" in by_source:
            ahead = by_source["di_ahead_of_ci_beyond_spread"]
            findings.append(f"{eps}: {'yes' if ahead else 'no'}")
    largest = round(max(results["eps_values"]) * 255)
    figure = _refreshed_figure(f"uaps_{dataset}.png", _copy_if_present(os.path.join(
        REPO, _workdir(entry["command"]), "uap", "figures", f"uaps_eps{largest}.png")))
    return (f"## Table 10 ({dataset}): fooling rates of UAPs, % of test images whose label "
            f"changes\n\n"
            f"Recorded {entry['date']} on {entry['processor']} by `{entry['command']}`. "
            f"One generator per source, ε and seed ({results['seeds']}), each trained for the "
            f"same number of steps; each scored on {results['num_test_images']} test images "
            f"over sampled perturbations from fixed latents; mean ± sd over seeds. The paper "
            f"reports ε = 10/255 only. Sizes and the learning-rate departure: uap.py's "
            f"docstring.\n\n"
            + report.markdown_table(["ε", "source", "fooling rate %", "accuracy under UAP %",
                                     "paper fooling rate %"], rows)
            + "\n\nDI-crafted UAPs fool more than CI-crafted ones by more than the seeds' "
            f"spread: {'; '.join(findings)} (paper: yes, by 4.05 points or more)."
            + (f"\n\n![sampled UAPs at ε = {largest}/255 over test images]({figure})"
               if figure else ""))


# Table 9 of the paper: SHOT (Liang et al., ICML 2020) on the paper's network, cited, not rerun.
_SHOT = {"usps_mnist": (58.55, 88.65), "mnist_usps": (76.06, 85.83)}
_TABLE7_ROWS = (("source_only", "source only (no adaptation)"),
                ("adda_real_source", "ADDA, real source images"),
                ("adda_data_impressions", "ADDA, Data Impressions (source-free)"))


def _seed_summary(values: list[float]) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def table7() -> str | None:
    """Tables 7 and 9 for U→M and M→U: mean ± sd over seeds next to the paper; the β
    ablation; Fig. 6."""
    rows, ablation, commands, entries = [], [], [], {}
    for direction, label in _DIRECTIONS.items():
        runs = [_load(f"adapt_{direction}_seed{seed}") for seed in _ADAPT_SEEDS]
        if any(entry is None for entry in runs):
            continue
        entries[direction] = runs
        commands.append(f"`python benchmarks/record.py table7_{direction}`")
        paper = runs[0]["results"].get("paper", {})
        summaries = {}
        for key, what in _TABLE7_ROWS:
            summaries[key] = _seed_summary([entry["results"]["adapt"][key] for entry in runs])
            rows.append((label, what, f"{summaries[key][0]:.2f} ± {summaries[key][1]:.2f}",
                         _fmt(paper.get(key))))
        gain = _seed_summary([entry["results"]["adapt"]["adda_data_impressions"]
                              - entry["results"]["adapt"]["source_only"] for entry in runs])
        paper_gain = paper["adda_data_impressions"] - paper["source_only"]
        shot_before, shot_after = _SHOT[direction]
        rows.append((label, "improvement over source only, DIs (Table 9)",
                     f"{gain[0]:.2f} ± {gain[1]:.2f}",
                     f"{paper_gain:.2f} (SHOT: {shot_after - shot_before:.2f})"))
        high = [_load(f"adapt_{direction}_high_beta_seed{seed}") for seed in _ADAPT_SEEDS]
        if all(entry is not None for entry in high):
            low_beta = summaries["adda_data_impressions"]
            high_beta = _seed_summary([entry["results"]["adapt"]["adda_data_impressions"]
                                       for entry in high])
            beyond = _beyond_spread(low_beta, high_beta)
            ablation.append((label, f"{low_beta[0]:.2f} ± {low_beta[1]:.2f}",
                             f"{high_beta[0]:.2f} ± {high_beta[1]:.2f}",
                             "yes" if beyond and low_beta[0] > high_beta[0] else "no"))
    if not entries:
        return None
    first = next(iter(entries.values()))[0]
    results = first["results"]["adapt"]
    text = (f"## Tables 7 and 9: source-free domain adaptation with DIs and ADDA, target test "
            f"accuracy %\n\n"
            f"Recorded {first['date']} on {first['processor']} by {' and '.join(commands)}: "
            f"one run per seed ({list(_ADAPT_SEEDS)}), each drawing its own source and target "
            f"training images (1,800 USPS, 2,000 MNIST), training its own ADDA LeNet, "
            f"synthesising its own {results['num_source_images']['data_impressions']} DIs and "
            f"adapting for {results['num_steps']} steps; "
            f"mean ± sd over seeds, on the full target test set "
            f"({results['num_target_test_images']} images for MNIST). The discriminator sees the "
            f"{results['discriminator_input']}. Sizes (fewer source, synthesis and adaptation "
            f"steps than ADDA's code): adapt.py's docstring. SHOT is Table 9's, cited, not "
            f"rerun. SVHN → MNIST is not run: SVHN is not in shared/data "
            f"(`jaxinv run adapt.py:svhn_mnist` reads it from tensorflow-datasets).\n\n"
            + report.markdown_table(["direction", "model", "jaxinv", "paper"], rows))
    if ablation:
        text += ("\n\n§4.2.3's β ablation, ADDA on DIs of the same source models "
                 "(`python benchmarks/record.py adapt_beta_ablation`); the paper finds lower "
                 "β adapts better.\n\n"
                 + report.markdown_table(["direction", "β ∈ {0.01, 0.1}", "β ∈ {0.1, 1.0}",
                                          "lower β better beyond the seeds' spread"], ablation))
    direction = next(iter(entries))
    figure = _refreshed_figure(f"fig6_tsne_{direction}.png", _copy_if_present(os.path.join(
        REPO, _workdir(first["command"]), "adapt", "figures", "tsne.png")))
    if figure is not None:
        text += (f"\n\nFig. 6 ({_DIRECTIONS[direction]}, seed 0): t-SNE of encoder features "
                 f"of the source DIs and of MNIST test images, before and after adaptation; "
                 f"colour is the class, marker the domain.\n\n![Fig. 6]({figure})")
    return text


_CONTINUAL_METHODS = {"dual_distillation": "DIs + dual distillation (ours)",
                      "lwf": "LwF", "finetune": "fine-tuning",
                      "fixed_representation": "fixed representation",
                      "joint": "joint training on all real data (upper bound)"}


def fig8(dataset: str) -> str | None:
    """Fig. 8's protocol on `dataset`: accuracy per step and method (all / old / new classes),
    mean ± sd over seeds, the curve of accuracy against classes seen, and the finding."""
    runs = [_load(f"continual_{dataset}_seed{seed}") for seed in _CONTINUAL_SEEDS]
    if any(entry is None for entry in runs):
        return None
    figures_of = [entry["results"]["continual"] for entry in runs]
    num_seen = figures_of[0]["num_classes_seen"]
    rows, curves, ahead = [], {}, []
    for method, label in _CONTINUAL_METHODS.items():
        curves[label] = []
        for step, seen in enumerate(num_seen):
            cells = []
            for part in ("all", "old", "new"):
                values = [f["accuracy"][method][step][part] for f in figures_of]
                if values[0] is None:
                    cells.append("—")
                    continue
                mean, sd = _seed_summary(values)
                cells.append(f"{mean:.2f} ± {sd:.2f}")
                if part == "all":
                    curves[label].append(mean)
            if step:
                rows.append((step, seen, label, *cells))
    for step in range(1, len(num_seen)):
        ours = _seed_summary([f["accuracy"]["dual_distillation"][step]["all"]
                              for f in figures_of])
        beaten = all(ours[0] - ours[1] > _seed_summary(
            [f["accuracy"][baseline][step]["all"] for f in figures_of])[0]
            + _seed_summary([f["accuracy"][baseline][step]["all"] for f in figures_of])[1]
            for baseline in ("lwf", "finetune", "fixed_representation"))
        ahead.append(f"step {step}: {'yes' if beaten else 'no'}")
    figure = os.path.join("benchmarks", "figures", f"fig8_{dataset}.png")
    figures_lib.accuracy_curves(num_seen, curves, os.path.join(REPO, figure),
                                xlabel="number of classes seen",
                                ylabel="test accuracy on classes seen (%)",
                                title=f"Class-incremental {dataset}, mean of "
                                      f"{len(runs)} seeds")
    return (f"## Fig. 8 protocol ({dataset}): class-incremental learning, test accuracy %\n\n"
            f"Recorded {runs[0]['date']} on {runs[0]['processor']} by `python "
            f"benchmarks/record.py continual_{dataset}` (seeds {list(_CONTINUAL_SEEDS)}, e.g. "
            f"`{runs[0]['command']}`). LeNet-5, classes 0-1 first, then steps of two classes; "
            f"mean ± sd over seeds on the test images of the classes seen so far (old: seen "
            f"before the step; new: added by it). Sizes: continual.py's docstring. The paper "
            f"reports CIFAR-100 only (Fig. 8, a plot): there is no figure of its to compare "
            f"with on {dataset}.\n\n"
            + report.markdown_table(["step", "classes seen", "method", "all", "old", "new"], rows)
            + "\n\nDIs with dual distillation beat LwF, fine-tuning and fixed representation "
            f"by more than the seeds' spread: {'; '.join(ahead)} (paper, CIFAR-100: at every "
            f"step).\n\n![accuracy against classes seen]({figure})")


def _seeds_cell(distill: dict) -> tuple[str, tuple[float, float]]:
    """"mean ± sd (n seeds)" of a distill block's students, and (mean, sd)."""
    seeds = distill.get("student_seeds")
    if not seeds:
        value = distill["student_test_accuracy"]
        return f"{value:.2f} (1 seed)", (value, 0.0)
    return (f"{seeds['mean']:.2f} ± {seeds['sd']:.2f} ({len(seeds['seeds'])} seeds)",
            (seeds["mean"], seeds["sd"]))


# The cross-type matrix of the CAKE authors (MNIST): the diagonal and CNN -> MLP.
_CAKE_AUTHORS_TYPES = {("mlp", "mlp"): 98.1, ("lenet5", "lenet5"): 98.8,
                       ("resnet8", "resnet8"): 93.9, ("vit", "vit"): 97.2,
                       ("lenet5", "mlp"): 63.7}
_CAKE_TYPE_NAMES = {"mlp": "MLP", "lenet5": "CNN (LeNet-5)", "resnet8": "ResNet (ResNet-8)",
                    "vit": "ViT"}


def _diversity_cells(diversity: dict | None) -> tuple[str, ...]:
    if not diversity:
        return ("—",) * 4
    return (*(f"{diversity[f'fid_{layer}']:.3g}" for layer in ("shallow", "middle", "final")),
            f"{diversity['pairwise_cosine_distance']:.3f}")


def bn_methods_tables() -> str | None:
    """DI, DeepInversion, ADI and CMI on the BN CNN teachers, KD on real data as the ceiling,
    each set's diversity, CMI's module cut-offs, and samples of each method."""
    entries = {(method, dataset): _load(f"{method}_{dataset}")
               for dataset in _BN_DATASETS for method in _BN_METHODS}
    if not any(entries.values()):
        return None
    parts = ["## DeepInversion and CMI on BatchNorm teachers: student test accuracy %, and "
             "the diversity of each set",
             "BN CNN → BN CNN-half (CIFAR-10: WRN-10-1 → WRN-10-1-half, trained on the "
             "4,000 training images of the CIFAR-10 files, scored on their JPEG test set), "
             "5,000 images per method (500 per class) and one "
             "distillation budget (2,000 Adam steps of 128 at τ = 20, no augmentation); three "
             "student seeds on one synthesised set. Sized for 2 CPU cores "
             "(deepinversion.py's and cmi.py's docstrings: 200 pixel steps, 100 generator "
             "steps of width 64 per batch of 100; the reference code: 1,000 and 200 steps on "
             "batches of 256). FID: Fréchet distance of the teacher's spatially pooled "
             "features (first convolution, middle convolution, penultimate) between the set "
             "and the 10,000 real test images, the form of the CMI paper's Table 3 with the "
             "teacher in place of Inception (lower: closer to real); diversity: mean pairwise "
             "cosine distance of the penultimate features (higher: more diverse). The paper "
             "column is its CIFAR-10 WRN-40-2 → WRN-16-1 figure, for the ranking only."]
    for dataset in _BN_DATASETS:
        rows = []
        for method, (_, label) in _BN_METHODS.items():
            entry = entries[(method, dataset)]
            if entry is None:
                rows.append((label, "not recorded", "", *("",) * 4, "", "",
                             f"`python benchmarks/record.py {method}_{dataset}`", ""))
                continue
            results = entry["results"]
            rows.append((label, _seeds_cell(results["distill"])[0],
                         _fmt(100 * results["teacher_target_agreement"]),
                         *_diversity_cells(results["distill"].get("diversity")),
                         _fmt(_CMI_PAPER.get(method)), _fmt(results["teacher_test_accuracy"]),
                         f"`{entry['command']}`", entry["date"]))
        base = entries[("deepinversion", dataset)]
        if base is not None and "student_kd_test_accuracy" in base["results"]["distill"]:
            distill = base["results"]["distill"]
            rows.append(("KD on the real training images (ceiling; diversity of as many "
                         "as the sets hold)",
                         f"{distill['student_kd_test_accuracy']:.2f} (1 seed)", "—",
                         *_diversity_cells(distill.get("diversity_real")), "—",
                         _fmt(base["results"]["teacher_test_accuracy"]),
                         f"`{base['command']}`", base["date"]))
        parts.append(f"### {dataset}\n\n" + report.markdown_table(
            ["method", "student", "teacher–target agreement", "FID shallow", "FID middle",
             "FID final", "diversity", "paper (CIFAR-10)", "teacher", "command", "date"], rows))
    full = _load("cmi_mnist")
    if full is not None:
        full_cell, full_stats = _seeds_cell(full["results"]["distill"])
        ablation = [("CMI (all modules)", full_cell, "",
                     *_diversity_cells(full["results"]["distill"].get("diversity")),
                     _fmt(_CMI_PAPER["cmi"]), f"`{full['command']}`")]
        for variant, label in _CMI_ABLATIONS.items():
            entry = _load(f"cmi_mnist_{variant}")
            if entry is None:
                continue
            cell, stats = _seeds_cell(entry["results"]["distill"])
            beyond = _beyond_spread(stats, full_stats)
            ablation.append((label, cell, f"{stats[0] - full_stats[0]:+.2f}"
                             + (" (beyond the spread)" if beyond else ""),
                             *_diversity_cells(entry["results"]["distill"].get("diversity")),
                             _fmt(_CMI_PAPER[variant]), f"`{entry['command']}`"))
        if len(ablation) > 1:
            parts.append("CMI's module cut-offs on MNIST (`python benchmarks/record.py "
                         "cmi_ablation`; the paper's Table 2 on CIFAR-10). Without the "
                         "generator, each batch's pixels are optimised as DeepInversion's "
                         "(Adam 0.1, clipped).\n\n" + report.markdown_table(
                             ["variant", "student", "difference", "FID shallow", "FID middle",
                              "FID final", "diversity", "paper", "command"], ablation))
    from jaxinv import data

    for dataset in _BN_DATASETS:
        if not any(entries[(method, dataset)] for method in _BN_METHODS):
            continue
        sections = {label.split(" (")[0]: f"{method}_{dataset}"
                    for method, (_, label) in _BN_METHODS.items()}
        figure = _refreshed_figure(f"bn_methods_samples_{dataset}.png", functools.partial(
            _draw_samples, sections, list(data.class_names(dataset))))
        if figure is not None:
            parts.append(f"Samples of each method from the same {dataset} BN teacher, titled with "
                         f"the teacher's top class.\n\n![samples by method]({figure})")
    return "\n\n".join(parts)


def _spaceship_runs(name: str) -> list[dict]:
    """The recorded seeds of `spaceshipnet_<name>_seed<s>`."""
    return [entry for entry in (_load(f"spaceshipnet_{name}_seed{seed}") for seed in range(3))
            if entry is not None]


def _spaceship_cell(runs: list[dict]) -> tuple[str, tuple[float, float]]:
    accuracies = [run["results"]["synthesis_student"]["student_test_accuracy"] for run in runs]
    mean, sd = _seed_summary(accuracies)
    if len(runs) == 1:
        return f"{mean:.2f} (1 seed)", (mean, sd)
    return (f"{mean:.2f} ± {sd:.2f} ({len(runs)} seeds: "
            f"{', '.join(f'{a:.2f}' for a in accuracies)})", (mean, sd))


def _spaceship_command(runs: list[dict]) -> str:
    return f"`{runs[0]['command'].replace('seed0', 'seed<s>').replace('seed=0', 'seed=<s>')}`"


def spaceshipnet_tables() -> str | None:
    """SpaceshipNet against CMI and DeepInversion on the BN teachers, its ablations with Table
    C's CAM difference, the authors' code's settings, and Table E at CPU scale."""
    runs = {dataset: _spaceship_runs(dataset) for dataset in _BN_DATASETS}
    variants = {variant: _spaceship_runs(f"mnist{variant}") for variant in _SPACESHIP_VARIANTS}
    table_e = {images: _load(f"spaceshipnet_cifar10_images_{images}")
               for images in _TABLE_E_IMAGES}
    if not any(runs.values()) and not any(table_e.values()):
        return None
    parts = ["## SpaceshipNet on BatchNorm teachers: the student's test accuracy %",
             "The student SpaceshipNet distils inside its epoch loop, scored at the end (the "
             "authors' code reports the best epoch on the test set). Same teachers, students, "
             "image budget (5,000 optimised images) and student steps (2,000) as the "
             "DeepInversion and CMI section; a seed is a whole run (synthesis and student), "
             "where those methods' seeds are students of one set. spaceshipnet.py's docstring "
             "says how the supplement's sizes were scaled. The paper: 95.39 for ResNet-34 → "
             "ResNet-18 on CIFAR-10. \"Distilled afterwards\": a finished run's pool of "
             "optimised images given to the distill task as the other methods' sets are, "
             "three students, no CFE or mSARC: the worth of the images, apart from the "
             "online student's training (`python benchmarks/record.py "
             "spaceshipnet_mnist_pool_kd` copies seed 0's synthesis/ folder into its "
             "workdir first)."]
    rows = []
    for dataset in _BN_DATASETS:
        if runs[dataset]:
            cell, _ = _spaceship_cell(runs[dataset])
            rows.append((dataset, "SpaceshipNet", cell, _spaceship_command(runs[dataset]),
                         runs[dataset][-1]["date"]))
        pool_kd = _load(f"spaceshipnet_{dataset}_pool_kd")
        if pool_kd is not None and runs[dataset]:
            rows.append((dataset, "SpaceshipNet's pool (seed 0) distilled afterwards",
                         _seeds_cell(pool_kd["results"]["distill"])[0],
                         f"`{pool_kd['command']}`", pool_kd["date"]))
        for method in ("cmi", "deepinversion"):
            entry = _load(f"{method}_{dataset}")
            if entry is not None and runs[dataset]:
                rows.append((dataset, _BN_METHODS[method][1],
                             _seeds_cell(entry["results"]["distill"])[0],
                             f"`{entry['command']}`", entry["date"]))
    if rows:
        parts.append(report.markdown_table(["dataset", "method", "student", "command", "date"],
                                           rows))
    if variants[""] and any(variants[v] for v in _SPACESHIP_VARIANTS if v):
        _, full = _spaceship_cell(variants[""])
        ablation = []
        for variant, label in _SPACESHIP_VARIANTS.items():
            if not variants[variant]:
                continue
            cell, stats = _spaceship_cell(variants[variant])
            beyond = _beyond_spread(stats, full,
                                    min(len(variants[variant]), len(variants[""])))
            cams = [run["results"]["synthesis_student"].get("cam_difference")
                    for run in variants[variant]]
            mae, mse = (("—", "—") if not all(cams) else
                        (f"{np.mean([c['mae'] for c in cams]):.2f}",
                         f"{np.mean([c['mse'] for c in cams]):.1f}"))
            ablation.append((label, cell, "" if not variant else
                             f"{stats[0] - full[0]:+.2f}" + (" (beyond the spread)"
                                                             if beyond else ""),
                             mae, mse, _spaceship_command(variants[variant])))
        parts.append("The ablations and the authors' code's settings on MNIST (`python "
                     "benchmarks/record.py spaceshipnet_ablation`), with Table C: the "
                     "difference between the teacher's and the student's last-stage class "
                     "activation maps on 2,000 test images, resized to the image and scaled "
                     "to [0, 255], mean over seeds. The ablations of a seed share the full "
                     "method's generator and pool, since the student does not feed back into "
                     "the generator; what that generator makes of its early pooled features "
                     "by the end is in \"SpaceshipNet: what the final generator makes of "
                     "early pooled features\" (`python benchmarks/spaceshipnet_drift.py "
                     "--write`).\n\n"
                     + report.markdown_table(
                         ["variant", "student", "difference", "CAM MAE", "CAM MSE", "command"],
                         ablation))
    rows = []
    for images, entry in table_e.items():
        if entry is None:
            continue
        task, paper = entry["results"]["synthesis_student"], entry["results"]["paper"]
        rows.append((f"{images:,}", _fmt(task["student_test_accuracy"]),
                     _fmt(task["real_images_student"]["test_accuracy"]),
                     f"{paper['student']:.2f}", f"{paper['real_images_student']:.2f}",
                     f"`{entry['command']}`", entry["date"]))
    if rows:
        parts.append("Table E at CPU scale, on the CIFAR-10 files' WRN-10-1 → WRN-10-1-half: "
                     "the student against the number of optimised images (epochs of 50 "
                     "latents; the student's 2,000 steps spread over them), next to KD on as "
                     "many real training images with the comparisons' distillation budget; "
                     "one seed per point (`python benchmarks/record.py "
                     "spaceshipnet_table_e`). The paper's columns are its ResNet-34 → "
                     "ResNet-18 on the whole of CIFAR-10 (teacher 95.70).\n\n"
                     + report.markdown_table(
                         ["optimised images", "SpaceshipNet", "KD on real images",
                          "paper: SpaceshipNet", "paper: KD on real images", "command",
                          "date"], rows))
    return "\n\n".join(parts)


def zskd_protocol_table() -> str | None:
    """Tables 1 and 2 under both reporting protocols: final students, and the best of the
    per-epoch test evaluations (the released code's number, selected on the test set)."""
    from jaxinv.tasks.distill import BEST_ON_TEST

    rows, findings = [], []
    for dataset in _ZSKD_EPOCH_STEPS:
        means = {}
        for variant, label in (("protocol", "jaxinv's default"),
                               ("released", "the released code's procedure and recipe"),
                               ("released_images", "the released code's procedure, jaxinv's "
                                                   "distillation")):
            section = f"zskd_{dataset}_{variant}"
            entry = _load(section)
            if entry is None:
                rows.append((dataset, label, "", "not recorded", "",
                             f"`python benchmarks/record.py {section}`", ""))
                continue
            results = entry["results"]
            final, best = results["distill"]["student_seeds"], results["distill"][BEST_ON_TEST]
            paper = results.get("paper", {}).get("zskd")
            means[variant] = (final, best["mean"], paper)
            rows.append((dataset, label, _fmt(paper),
                         f"{final['mean']:.2f} ± {final['sd']:.2f} (n = {len(final['seeds'])})",
                         f"{best['mean']:.2f} ± {best['sd']:.2f}", f"`{entry['command']}`",
                         entry["date"]))
        if "protocol" in means and "released" in means:
            findings.append(_zskd_gap_finding(dataset, means))
    if all(row[3] == "not recorded" for row in rows):
        return None
    return ("## ZSKD's reporting protocol (Tables 1 and 2): final students against the best "
            "test evaluation\n\nThe released code scores its student on the test set after "
            "every epoch and reports the best accuracy seen. That figure is selected on the "
            "test set, the released code's protocol; it is not comparable to a final model, and "
            "jaxinv reports it only in this table. Mean ± sd over students, test accuracy %. "
            "The released procedure runs 500 synthesis steps per batch here (the code: 1500) "
            "and 50 distillation epochs (the code: 500); zskd.py's docstring.\n\n"
            + report.markdown_table(
                ["dataset", "procedure", "paper", "final student", "best test evaluation "
                 "(selected on the test set)", "command", "date"], rows)
            + "".join(f"\n\n{finding}" for finding in findings))


def _spread_verdict(a: dict, b: dict) -> str:
    """`_beyond_spread` of two seed summaries, in words."""
    beyond = _beyond_spread((a["mean"], a["sd"]), (b["mean"], b["sd"]),
                            min(len(a["seeds"]), len(b["seeds"])))
    return "beyond the spread" if beyond else "within the spread, so no difference is shown"


def _zskd_gap_finding(dataset: str, means: dict) -> str:
    """What these numbers alone say about the gap to the paper on `dataset`: how much the
    selection on the test set adds, how much the released procedure changes a final student,
    and, with its images distilled by our recipe, how much of that the images make (a change
    counts only beyond the larger spread of the two)."""
    (default, default_best, paper), (released, released_best, _) = (means["protocol"],
                                                                    means["released"])
    change = released["mean"] - default["mean"]
    spread = max(default["sd"], released["sd"])
    verdict = _spread_verdict(default, released)
    split = ""
    if "released_images" in means:
        images = means["released_images"][0]
        split = (f" Distilled by our recipe, the released procedure's images give "
                 f"{images['mean']:.2f}: the images change our default by "
                 f"{images['mean'] - default['mean']:+.2f} ({_spread_verdict(default, images)}), "
                 f"the released recipe changes theirs by {released['mean'] - images['mean']:+.2f} "
                 f"({_spread_verdict(images, released)}).")
    return (f"{dataset}: the paper reports {paper:.2f}. Our default's final students reach "
            f"{default['mean']:.2f} (gap {paper - default['mean']:.2f}); selecting on the test "
            f"set adds {default_best - default['mean']:.2f} points to them and "
            f"{released_best - released['mean']:.2f} to the released procedure's. The released "
            f"procedure moves the final students by {change:+.2f} points ({verdict}; larger "
            f"sd {spread:.2f}). Its best test evaluation, the code's reported number, is "
            f"{released_best:.2f}, {abs(paper - released_best):.2f} "
            f"{'below' if released_best < paper else 'above'} the paper's figure." + split)


def dfm_tables() -> str | None:
    """Data from Model's Tables 1 and 2 (LeNet-5 on MNIST), next to the paper, and Fig. 2."""
    entries = {origin: _load(f"dfm_{origin}") for origin in _DFM_ORIGINS}
    if not any(entries.values()):
        return None
    parts = ["## Data from Model (Benz et al., CVPR-W 2020): chains on MNIST, LeNet-5",
             "M0 → D1 → M1 → … → M5: each D_i extracted from M_{i-1} by l2-PGD from "
             "Fashion-MNIST backgrounds toward virtual logits, each M_i a fresh LeNet-5 trained "
             "on D_i by the logit distance (dfm.py's docstring: 30,000 images per link where "
             "the paper extracts 500,000; ε of the extraction chosen on a validation split, "
             "section `dfm_epsilon`). Test accuracy %, ours (paper)."]
    rows, robustness = [], []
    for origin, label in _DFM_ORIGINS.items():
        entry = entries[origin]
        if entry is None:
            rows.append((label, "not recorded", *("",) * 5,
                         f"`python benchmarks/record.py dfm_{origin}`", ""))
            continue
        results = entry["results"]
        links, paper = results["chain"]["links"], results["paper"]
        cells = [f"{link['test_accuracy']:.2f} ({value})"
                 for link, value in zip(links, paper["chain"], strict=False)]
        seeds = results["chain"].get("first_link_seeds")
        if seeds:
            cells[1] += (f"; {seeds['mean']:.2f} ± {seeds['sd']:.2f} over "
                         f"{len(seeds['seeds'])} seeds")
        rows.append((label, *cells, f"`{entry['command']}`", entry["date"]))
        for eps_index, (eps_key, ours_key) in enumerate(zip(
                ("0", "1", "2", "3", "4"), links[0]["pgd_accuracy"], strict=True)):
            paper_row = paper["chain"] if eps_key == "0" else paper["pgd"][eps_key]
            robustness.append((label if eps_index == 0 else "", eps_key, *(
                f"{link['pgd_accuracy'][ours_key]:.1f} ({value})"
                for link, value in zip(links, paper_row, strict=False))))
    names = [f"M{i}" for i in range(6)]
    parts.append("Table 1.\n\n" + report.markdown_table(
        ["origin", *names, "command", "date"], rows))
    if robustness:
        parts.append("Table 2: accuracy % under l2-PGD (20 steps of 2.5 ε / 20) at the paper's "
                     "ε for 28x28 images, scaled by 32/28 for the 32x32 inputs, on the whole "
                     "test set.\n\n" + report.markdown_table(["origin", "ε", *names],
                                                            robustness))
    for origin, label in _DFM_ORIGINS.items():
        if entries[origin] is None:
            continue
        figure = _refreshed_figure(f"dfm_chain_{origin}.png", _copy_if_present(os.path.join(
            REPO, _workdir(entries[origin]["command"]), "chain", "figures", "chain.png")))
        if figure is not None:
            parts.append(f"Fig. 2, {label}: real test images, then the first images of "
                         f"D1..D5.\n\n![chain]({figure})")
    return "\n\n".join(parts)


def _recorded_transfer_set(section: str):
    from jaxinv.synthesis.transfer_set import TransferSet

    entry = _load(section)
    path = entry and os.path.join(REPO, _workdir(entry["command"]), "synthesis",
                                  "transfer_set.npz")
    return TransferSet.load(path) if path and os.path.exists(path) else None


def _draw_samples(sections: dict[str, str], class_names: list[str], path: str) -> None:
    """Samples of each method's recorded set ({title: section}), when all of them are here."""
    sets = {title: _recorded_transfer_set(section) for title, section in sections.items()}
    if all(transfer_set is not None for transfer_set in sets.values()):
        figures_lib.samples_by_method(sets, class_names, path)


def cake_tables() -> str | None:
    """CAKE: LeNet-5 -> LeNet-5-half next to the poster, against DIs, the ablation, the
    cross-type matrix and its heatmap, and samples next to DIs of the same teacher."""
    main = {dataset: _load(f"cake_{dataset}") for dataset in _CAKE_DATASETS}
    if not any(main.values()):
        return None
    parts = ["## CAKE (Braun, Mundt and Kersting, AISTATS 2024): student test accuracy %"]
    rows = []
    for dataset, entry in main.items():
        if entry is None:
            rows.append((dataset, "", "not recorded yet", "", f"`python benchmarks/record.py "
                         f"cake_{dataset}`", ""))
            continue
        results, paper = entry["results"], entry["results"]["paper"]
        rows.append((dataset, "jaxinv's student optimiser",
                     f"{paper['cake']:.2f} ± {paper['cake_sd']:.2f}",
                     _seeds_cell(results["distill"])[0],
                     _fmt(results["teacher_test_accuracy"]), f"`{entry['command']}`",
                     entry["date"]))
    authors = _load("cake_mnist_authors_student")
    if authors is not None:
        paper = authors["results"]["paper"]
        rows.append(("mnist", "the authors' student optimiser (SGD 0.5)",
                     f"{paper['cake']:.2f} ± {paper['cake_sd']:.2f}",
                     _seeds_cell(authors["results"]["distill"])[0],
                     _fmt(authors["results"]["teacher_test_accuracy"]),
                     f"`{authors['command']}`", authors["date"]))
    parts.append("LeNet-5 → LeNet-5-half with the authors' synthesis settings, scaled to "
                 "24,000 samples (the authors: 256,000) and 30 epochs of them; the teacher is "
                 "zskd.py's. Student seeds share one sample set. The authors' student "
                 "optimiser (SGD 0.5, one-cycle) diverges at these sizes; jaxinv's was chosen "
                 "on a validation split (section `cake_student_optimizer` below). Sizes and "
                 "units: cake.py's docstring.\n\n"
                 + report.markdown_table(["dataset", "student optimiser", "poster", "jaxinv",
                                          "teacher", "command", "date"], rows))
    versus = []
    for dataset in _CAKE_DATASETS:
        cake, di = _load(f"cake_{dataset}_di_protocol"), _load(f"zskd_{dataset}")
        if cake is None or di is None:
            continue
        cake_cell, cake_stats = _seeds_cell(cake["results"]["distill"])
        di_cell, di_stats = _seeds_cell(di["results"]["distill"])
        gap = _beyond_spread(cake_stats, di_stats)
        better = "CAKE" if cake_stats[0] > di_stats[0] else "DIs"
        versus.append((dataset, cake["results"]["num_transfer_images"], di_cell, cake_cell,
                       f"{better}, beyond the seeds' spread" if gap else "within the spread",
                       f"`{di['command']}`; `{cake['command']}`"))
    if versus:
        parts.append("CAKE against Data Impressions: the same LeNet-5 teacher, LeNet-5-half "
                     "student, number of samples and distillation (zskd.py's: 10,000 Adam "
                     "steps at τ = 20 with augmentation).\n\n"
                     + report.markdown_table(["dataset", "samples", "Data Impressions", "CAKE",
                                              "better", "commands"], versus))
    reference = _load("cake_mnist_all_parts")
    if reference is not None:
        full_cell, full = _seeds_cell(reference["results"]["distill"])
        ablation = [(_CAKE_ABLATIONS["all_parts"], full_cell, "", f"`{reference['command']}`")]
        for variant, label in _CAKE_ABLATIONS.items():
            entry = _load(f"cake_mnist_{variant}")
            if entry is None or variant == "all_parts":
                continue
            cell, stats = _seeds_cell(entry["results"]["distill"])
            beyond = _beyond_spread(stats, full)
            ablation.append((label, cell, f"{stats[0] - full[0]:+.2f}"
                             + (" (beyond the spread)" if beyond else ""),
                             f"`{entry['command']}`"))
        if len(ablation) > 1:
            parts.append("Ablation on MNIST (`python benchmarks/record.py cake_ablation`): "
                         "6,000 samples each (12 sets; cake.py's docstring), each against all "
                         "parts at the same size; three student seeds per sample set.\n\n"
                         + report.markdown_table(["variant", "student", "difference",
                                                  "command"], ablation))
    types = {t: _load(f"cake_types_{t}") for t in _CAKE_TYPES}
    if any(types.values()):
        matrix = np.full((len(_CAKE_TYPES), len(_CAKE_TYPES)), np.nan)
        rows = []
        for i, teacher in enumerate(_CAKE_TYPES):
            entry = types[teacher]
            if entry is None:
                continue
            distill = entry["results"]["distill"]
            by_student = {distill["student"]: distill["student_test_accuracy"],
                          **distill.get("extra_students", {})}
            cells = []
            for j, student in enumerate(_CAKE_TYPES):
                matrix[i, j] = by_student[student]
                authors = _CAKE_AUTHORS_TYPES.get((teacher, student))
                cells.append(f"{by_student[student]:.2f}"
                             + (f" ({authors})" if authors is not None else ""))
            rows.append((_CAKE_TYPE_NAMES[teacher],
                         _fmt(entry["results"]["teacher_test_accuracy"]), *cells))
        figure = os.path.join("benchmarks", "figures", "cake_types_mnist.png")
        figures_lib.accuracy_matrix(matrix, [_CAKE_TYPE_NAMES[t] for t in _CAKE_TYPES],
                                    [_CAKE_TYPE_NAMES[t] for t in _CAKE_TYPES],
                                    os.path.join(REPO, figure),
                                    title="CAKE across model types, MNIST (student %)")
        first = next(entry for entry in types.values() if entry)
        parts.append(f"The cross-type matrix on MNIST (`python benchmarks/record.py "
                     f"cake_types`, e.g. `{first['command']}`), one seed per cell; rows are "
                     f"teachers, columns students, the authors' figures in parentheses. "
                     f"5,000 samples of 128 steps per teacher (cake.py's docstring).\n\n"
                     + report.markdown_table(
                         ["teacher", "teacher accuracy",
                          *[_CAKE_TYPE_NAMES[t] for t in _CAKE_TYPES]], rows)
                     + f"\n\n![cross-type matrix]({figure})")
    figure = None if main["mnist"] is None else _refreshed_figure(
        "cake_samples_mnist.png", functools.partial(
            _draw_samples, {"CAKE": "cake_mnist", "Data Impressions": "zskd_mnist"},
            [str(c) for c in range(10)]))
    if figure is not None:
        parts.append("CAKE samples (spread over the sample sets, largest step size first) "
                     "next to Data Impressions of the same MNIST teacher, titled with the "
                     f"teacher's top class.\n\n![CAKE and DI samples]({figure})")
    return "\n\n".join(parts)


def _nested(tree: dict, keys: tuple[str, ...]):
    for key in keys:
        tree = tree[key]
    return tree


def detail(section: str, entry: dict) -> str:
    """A section of BENCHMARKS.md with the whole results of one recorded run."""
    return (f"## {section}: {EXPERIMENTS.get(section, (None, section))[1]}\n\n"
            f"Recorded {entry['date']} on {entry['processor']}. Command: `{entry['command']}`. "
            f"Results: `benchmarks/results/{section}.json`.\n\n"
            + report.markdown_table(["result", "value"], _flatten(entry["results"])))


def _flatten(tree, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for key, value in tree.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, int | float | str) and not isinstance(value, bool):
            rows.append((f"{prefix}{key}", value))
    return rows


def record_teachers() -> None:
    for section, config in TEACHERS.items():
        record(section, f"jaxinv train teacher.py:{config} --workdir runs/{section}")


def write_benchmarks() -> None:
    """Rewrites BENCHMARKS.md: the headline, then one section per recorded result file."""
    sections = [headline()]
    sections += [table for table in (table4("mnist"), table4("fashion_mnist"),
                                     table10("mnist"), table10("fashion_mnist"), table7(),
                                     fig8("mnist"), fig8("fashion_mnist"), cake_tables(),
                                     bn_methods_tables(), spaceshipnet_tables(),
                                     dfm_tables(), zskd_protocol_table())
                           if table]
    for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
        section = os.path.splitext(os.path.basename(path))[0]
        sections.append(detail(section, report.read_json(path)))
    text = ("# jaxinv benchmarks\n\nGenerated by `python benchmarks/record.py`; speed "
            "benchmarks by `benchmarks/bench_*.py --write`. Variants, ablations and jaxinv 0.1's "
            "figures: [benchmarks/APPENDIX.md](benchmarks/APPENDIX.md).\n\n"
            + "\n\n".join(sections) + "\n")
    speed = _speed_sections()
    if "<!-- begin:gpu" not in speed:
        speed += ("\n## GPU\n\nPending: `benchmarks/gpu.sh` (DI synthesis on ResNet-34 against "
                  "eager and compiled PyTorch, fp32 and bf16) has not run on a GPU yet.\n")
    with open(BENCHMARKS, "w") as f:
        f.write(text + speed)


def _speed_sections() -> str:
    """The speed sections that benchmarks/bench_*.py wrote into BENCHMARKS.md, kept as they are."""
    if not os.path.exists(BENCHMARKS):
        return ""
    text = open(BENCHMARKS).read()
    blocks = []
    while "<!-- begin:" in text:
        start = text.index("<!-- begin:")
        end = text.index("-->", text.index("<!-- end:", start)) + 3
        blocks.append(text[start:end])
        text = text[end:]
    return "".join(f"\n{block}\n" for block in blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="+",
                        choices=[*EXPERIMENTS, *GROUPS, "teachers", "headline"])
    args = parser.parse_args()
    for section in args.sections:
        if section == "teachers":
            record_teachers()
        elif section in GROUPS:
            for member in GROUPS[section]:
                record(member, EXPERIMENTS[member][0])
        elif section != "headline":
            record(section, EXPERIMENTS[section][0])
    write_benchmarks()
    print(json.dumps({"written": BENCHMARKS}))


if __name__ == "__main__":
    main()
