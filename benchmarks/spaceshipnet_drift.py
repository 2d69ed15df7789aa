"""Does SpaceshipNet's generator, kept across epochs, still decode its early pooled features
into the images they were when the run ends?

The student's images are pooled features decoded by the *current* generator (§A.2 of the
supplement), so features pooled in epoch 1 are decoded at the end by a generator that has moved
on for the whole run. For each finished run, this reads the final checkpoint (generator, pool,
student) and reports:

- how often the teacher gives the pool's images (rendered when they were pooled) their
  balanced labels (class i mod K), over the first and the last tenth of the epochs: how well
  the generator fitted each epoch's fresh latents, as its learning rate decays;
- for the final generator's decodes of the pooled F1, F2 and F3 (no channel exchange, running
  BatchNorm statistics, as the student's steps decode): how often the teacher gives a decode
  the class it gives the pooled image ("kept"), over the first and the last tenth of the
  epochs (the last tenth, which the generator barely moved past, shows what decoding with
  running rather than batch statistics alone changes), and the share of the first tenth's
  decodes in the teacher's most frequent class;
- how often the final student agrees with the teacher on all those decodes.

A generator that drifts turns early features into other images, perhaps of few classes, which
the student trains on until the end. Nothing is written into the run workdirs.

    python benchmarks/spaceshipnet_drift.py [--write] [WORKDIR ...]

Without WORKDIR, every finished run of `python benchmarks/record.py spaceshipnet_mnist`,
`spaceshipnet_ablation`, `spaceshipnet_fashion_mnist` and `spaceshipnet_cifar10`.
``--write`` replaces the ``spaceshipnet_drift`` section of BENCHMARKS.md.
"""

# ruff: noqa: E402  (the path set-up below has to run before the jaxinv imports)

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import argparse
import datetime

import jax
import ml_collections
import numpy as np

from benchmarks import record
from benchmarks.bench_synthesis import command_line, cpu_model
from jaxinv import checkpoint, models, pipeline, report, train
from jaxinv.models.spaceship import LEVELS, SpaceshipGenerator
from jaxinv.synthesis import spaceshipnet

SECTION = "spaceshipnet_drift"
# The workdirs of the recorded SpaceshipNet runs, as record.py names them.
DEFAULT_RUNS = tuple(record._workdir(record.EXPERIMENTS[section][0]) for group in (
    "spaceshipnet_mnist", "spaceshipnet_ablation", "spaceshipnet_fashion_mnist",
    "spaceshipnet_cifar10") for section in record.GROUPS[group])
EVAL_BATCH = 1000


def _final_state(workdir: str):
    """The run's config, teacher, labels and final rounds state; refuses an unfinished run."""
    config = ml_collections.ConfigDict(report.read_json(os.path.join(workdir, "config.json")))
    if config.synthesis.get("method") != "spaceshipnet":
        raise SystemExit(f"{workdir} is not a SpaceshipNet run (synthesis.method = "
                         f"{config.synthesis.get('method')!r}).")
    teacher, _ = pipeline.obtain_teacher(config)
    method, inputs, metadata = spaceshipnet.build(teacher, config.synthesis)
    like = jax.eval_shape(method.init, jax.random.key(0), inputs)
    with checkpoint.Checkpoints(os.path.join(workdir, "synthesis", "state"),
                                max_to_keep=1) as ckpts:
        if ckpts.latest_step() != method.num_steps:
            raise SystemExit(f"{workdir} has not finished its {method.num_steps} epochs; "
                             "rerun its record command first.")
        state, _ = ckpts.restore(method.num_steps, like)
    return config, teacher, metadata["class"], state


def drift(workdir: str) -> dict:
    """{"pool_agreement": {"first", "last"}, "decodes": {"f1"|"f2"|"f3": {"kept_first",
    "kept_last", "largest_share_first"}}, "student_agreement", "student_test_accuracy"} of one
    finished run, all in %."""
    config, teacher, labels, state = _final_state(workdir)
    block = config.synthesis
    generator = SpaceshipGenerator(tuple(teacher.image_shape), width=block.generator_width)
    student = models.get_model(block.student, num_classes=teacher.num_classes)
    student_variables = state["student"].variables

    def teacher_predicts(images):
        return train.predict_logits(teacher.model, teacher.variables, images,
                                    EVAL_BATCH).argmax(-1)

    pool = jax.device_get(state["pool"])
    first = slice(0, max(1, block.num_epochs // 10) * block.batch_size)
    last = slice(-(first.stop), None)
    pooled = teacher_predicts(pool["images"])
    results = {"pool_agreement": {part: 100 * float(np.mean(pooled[rows] == labels[rows]))
                                  for part, rows in (("first", first), ("last", last))},
               "decodes": {}}
    agreements = []
    for level in LEVELS:
        decode = jax.jit(lambda features, level=level: generator.apply(
            state["generator"], features, level, method=SpaceshipGenerator.decode))
        images = np.concatenate([np.asarray(decode(features)) for features in np.split(
            pool[f"f{level}"], len(labels) // block.batch_size)])
        predicted = teacher_predicts(images)
        agreements.append(train.predict_logits(student, student_variables, images,
                                               EVAL_BATCH).argmax(-1) == predicted)
        kept = predicted == pooled
        results["decodes"][f"f{level}"] = {
            "kept_first": 100 * float(np.mean(kept[first])),
            "kept_last": 100 * float(np.mean(kept[last])),
            "largest_share_first": 100 * float(np.bincount(predicted[first]).max()
                                               / len(predicted[first]))}
    results["student_agreement"] = 100 * float(np.mean(np.concatenate(agreements)))
    scored = os.path.join(workdir, "synthesis_student", "results.json")
    if os.path.exists(scored):
        results["student_test_accuracy"] = report.read_json(scored)["student_test_accuracy"]
    return results


def _row(name: str, result: dict) -> list[str]:
    def per_level(key):
        return " / ".join(f"{d[key]:.0f}" for d in result["decodes"].values())

    accuracy = result.get("student_test_accuracy")
    pool = result["pool_agreement"]
    return [name, "–" if accuracy is None else f"{accuracy:.2f}",
            f"{pool['first']:.0f} / {pool['last']:.0f}", per_level("kept_first"),
            per_level("kept_last"), per_level("largest_share_first"),
            f"{result['student_agreement']:.1f}"]


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("workdirs", nargs="*")
    args = parser.parse_args(argv)
    workdirs = args.workdirs or [w for w in DEFAULT_RUNS
                                 if os.path.exists(os.path.join(w, "synthesis_student",
                                                                "results.json"))]
    if not workdirs:
        raise SystemExit("No finished SpaceshipNet run found; name its workdir, or record one "
                         "with `python benchmarks/record.py spaceshipnet_mnist`.")
    rows = [_row(os.path.basename(w.rstrip("/")), drift(w)) for w in workdirs]
    body = "\n".join([
        "## SpaceshipNet: what the final generator makes of early pooled features",
        "",
        f"Date: {datetime.date.today().isoformat()}, {cpu_model()}. Command: "
        f"`{command_line('benchmarks/spaceshipnet_drift.py', argv)}`. Read from each finished "
        "run's final checkpoint. Pool images: how often the teacher gives the images of the "
        "first and of the last tenth of the epochs, as rendered when pooled, their balanced "
        "labels. Decodes: the final generator's decodes of the pooled F1 / F2 / F3 (no "
        "exchange); how often the teacher gives a decode the class it gave the pooled image "
        "(\"kept\"), for the first and for the last tenth of the epochs (the generator barely "
        "moves after the last tenth is pooled, so there only decoding with running BatchNorm "
        "statistics changes F1 and F2's images); and the share of the first tenth's decodes "
        "in the teacher's most frequent class (10 % when balanced). "
        "Last: how often the final student agrees with the teacher on all decodes. The "
        "student trains on such decodes until the end of the run. The student does not feed "
        "back into the generator, so the ablations of a dataset and seed share the full "
        "method's generator and pool (the code's settings do not): only their student columns "
        "differ.",
        "",
        report.markdown_table(
            ["run", "student test %", "pool images = label %, first / last tenth",
             "decodes kept %, first tenth, F1 / F2 / F3",
             "decodes kept %, last tenth, F1 / F2 / F3",
             "largest class %, first tenth, F1 / F2 / F3",
             "student = teacher on decodes %"], rows),
    ])
    report.publish_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body, args.write)


if __name__ == "__main__":
    main()
