"""PNG figures: the class-similarity heatmap (Fig. 1), impression grids (Fig. 2), curves."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def similarity_heatmap(similarity: np.ndarray, class_names: Sequence[str], path: str,
                       title: str = "Class similarity from the final layer") -> str:
    """Saves a K×K heatmap with class names on both axes (Data Impressions, Fig. 1)."""
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(0.6 * k + 2, 0.6 * k + 1))
    im = ax.imshow(np.asarray(similarity), cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), class_names, rotation=60, ha="right")
    ax.set_yticks(range(k), class_names)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{similarity[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if similarity[i, j] < 0.5 else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def transfer_set_grid(transfer_set, class_names: Sequence[str], path: str,
                      per_class: int = 4) -> str:
    """Saves a grid of a TransferSet, one row per class, each titled with the teacher's top 2.

    Rows follow the class each example was made for (metadata "class") when the method records
    it, else the teacher's prediction; titles are the teacher's softmax on the image.
    """
    images, logits = transfer_set.images, transfer_set.logits
    classes = transfer_set.metadata.get("class", logits.argmax(-1))
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    k = len(class_names)
    fig, axes = plt.subplots(k, per_class, figsize=(1.7 * per_class, 1.8 * k), squeeze=False)
    for c in range(k):
        picks = np.flatnonzero(classes == c)[:per_class]
        for j in range(per_class):
            ax = axes[c, j]
            ax.axis("off")
            if j >= len(picks):
                continue
            image = images[picks[j]]
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                      vmin=0, vmax=1)
            top2 = np.argsort(-probs[picks[j]])[:2]
            ax.set_title(", ".join(f"{class_names[t]} {probs[picks[j], t]:.2f}"
                                   for t in top2), fontsize=6)
    return _save(fig, path)


def accuracy_curves(x: Sequence[float], curves: Mapping[str, Sequence[float]], path: str, *,
                    xlabel: str, title: str,
                    ylabel: str = "student test accuracy (%)") -> str:
    """Saves test accuracy (%) against `x` for each named curve (Figs. 3 and 4)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, ys in curves.items():
        ax.plot(x, ys, marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def tsne_domains(panels: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 classes: tuple[np.ndarray, np.ndarray], domain_names: tuple[str, str],
                 path: str, seed: int = 0) -> str:
    """Saves one t-SNE panel per entry of `panels` (Data Impressions, Fig. 6).

    Args:
      panels: title -> (source features (N_s, D), target features (N_t, D)); each panel is
        embedded on its own.
      classes: class of each source and each target point (colour).
      domain_names: legend names of the two domains (marker: circle source, cross target).
      path: PNG to write.
      seed: of t-SNE's initialisation.
    """
    from sklearn.manifold import TSNE  # imported here: only this figure needs it

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (title, (source, target)) in zip(axes[0], panels.items(), strict=True):
        points = np.concatenate([source, target]).astype(np.float64)
        embedded = TSNE(2, init="pca", random_state=seed,
                        perplexity=min(30.0, (len(points) - 1) / 3)).fit_transform(points)
        for part, (marker, name) in enumerate(zip(("o", "x"), domain_names, strict=True)):
            xy = embedded[:len(source)] if part == 0 else embedded[len(source):]
            ax.scatter(xy[:, 0], xy[:, 1], c=colours(np.asarray(classes[part]) % 10), s=8,
                       marker=marker, linewidths=0.6, alpha=0.7, label=name)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        legend = ax.legend(loc="best", fontsize=8)
        for handle in legend.legend_handles:  # the markers name domains; colours are classes
            handle.set_color("black")
    return _save(fig, path)


def perturbation_grid(perturbations: np.ndarray, clean: np.ndarray, perturbed: np.ndarray,
                      clean_labels: Sequence[int], fooled_labels: Sequence[int],
                      class_names: Sequence[str], path: str, eps: float) -> str:
    """Saves sampled perturbations (top row, shown stretched from [-ε, ε] to [0, 1]) above test
    images, clean and perturbed, titled with the prediction before and after (Fig. 9).

    Args:
      perturbations: (n, H, W, C) in [-eps, eps]; clean, perturbed: (n, H, W, C) in [0, 1].
    """
    def show(ax, image, vmin=0.0, vmax=1.0):
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else (image - vmin) / (vmax - vmin),
                  cmap="gray", vmin=vmin, vmax=vmax)
        ax.axis("off")

    n = len(perturbations)
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.2), squeeze=False)
    for j in range(n):
        show(axes[0, j], perturbations[j], -eps, eps)
        show(axes[1, j], clean[j])
        show(axes[2, j], perturbed[j])
        axes[1, j].set_title(f"clean: {class_names[clean_labels[j]]}", fontsize=7)
        fooled = fooled_labels[j] != clean_labels[j]
        axes[2, j].set_title(f"{'fooled' if fooled else 'kept'}: {class_names[fooled_labels[j]]}",
                             fontsize=7, color="red" if fooled else "black")
    axes[0, 0].set_title(f"UAPs (±{eps * 255:.0f}/255)", fontsize=7, loc="left")
    return _save(fig, path)


def accuracy_matrix(values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str],
                    path: str, *, title: str, row_title: str = "teacher",
                    col_title: str = "student") -> str:
    """Saves a heatmap of accuracies (%) with each cell written in it (CAKE's cross-type matrix).

    Args:
      values: (R, C) accuracies in [0, 100]; NaN cells are left blank.
    """
    values = np.asarray(values, np.float64)
    fig, ax = plt.subplots(figsize=(1.1 * values.shape[1] + 2, 0.9 * values.shape[0] + 1.2))
    im = ax.imshow(values, cmap="viridis", vmin=0.0, vmax=100.0)
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xlabel(col_title)
    ax.set_ylabel(row_title)
    for i, j in np.ndindex(values.shape):
        if np.isfinite(values[i, j]):
            ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] < 60 else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def samples_by_method(transfer_sets: Mapping[str, object], class_names: Sequence[str],
                      path: str, per_class: int = 3) -> str:
    """Saves samples of several TransferSets of one teacher side by side: one row per class,
    `per_class` columns per method, each titled with the teacher's top class and probability.

    Rows follow the class each sample was made for (metadata "class"), else the teacher's
    prediction; a row's samples are spread evenly over the class's samples in order (over
    CAKE's sample sets, from the largest step size to the smallest).
    """
    names = list(transfer_sets)
    k = len(class_names)
    fig, axes = plt.subplots(k, per_class * len(names),
                             figsize=(1.2 * per_class * len(names), 1.3 * k), squeeze=False)
    for m, name in enumerate(names):
        transfer_set = transfer_sets[name]
        logits = transfer_set.logits
        classes = transfer_set.metadata.get("class", logits.argmax(-1))
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        for c in range(k):
            members = np.flatnonzero(classes == c)
            picks = (members[np.linspace(0, len(members) - 1, per_class).astype(int)]
                     if len(members) else members)
            for j in range(per_class):
                ax = axes[c, m * per_class + j]
                ax.axis("off")
                if j >= len(picks):
                    continue
                image = transfer_set.images[picks[j]]
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                          vmin=0, vmax=1)
                top = int(probs[picks[j]].argmax())
                ax.set_title(f"{class_names[top]} {probs[picks[j], top]:.2f}", fontsize=6)
        first = axes[0, m * per_class]
        first.set_title(f"{name}\n{first.get_title()}", fontsize=7)
    return _save(fig, path)


def image_rows(rows: Mapping[str, np.ndarray], path: str, *, titles: Sequence[str] = ()) -> str:
    """Saves one row of images per entry of `rows` (name -> (n, H, W, C) in [0, 1]), the name
    at the left; `titles` label the columns (Data from Model's Fig. 2: the background images,
    then the set extracted at each link of a chain)."""
    n = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.2 * len(rows)), squeeze=False)
    for i, (name, images) in enumerate(rows.items()):
        for j in range(n):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(images):
                image = images[j]
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                          vmin=0.0, vmax=1.0)
            if i == 0 and j < len(titles):
                ax.set_title(titles[j], fontsize=7)
        axes[i, 0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    return _save(fig, path)
