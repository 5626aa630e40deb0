"""reports/modality_gap.png (pipeline/evaluation/gap_figure.py): texts and images of the most frequent labels, before and after
the texts' noise, in one PCA; its caption states the projection and the sample, read back from the PNG."""

import numpy as np

from pipeline.evaluation.figures import figure_content
from pipeline.evaluation.gap_figure import MAX_LABELS, PER_LABEL, gap_figure, gap_sample
from pipeline.testbeds.synthetic_worlds import World


def test_the_picture_shows_the_most_frequent_labels_and_says_how(tmp_path):
    world = World(seed=0, n_labels=6, dim=16, gap=3.0, label_gap=0.0)
    text_x, text_labels = world.texts(400)
    image_x, image_labels = world.images(300)
    labels = world.labels
    image_targets = labels.multi_hot(image_labels)
    sample = gap_sample(labels.names, text_x, labels.multi_hot(text_labels), image_x, image_targets, seed=0)
    frequent = [labels.names[c] for c in np.argsort(-image_targets.sum(0), kind="stable")[:MAX_LABELS]]
    assert sample.labels == frequent
    for k, name in enumerate(sample.labels):
        c = labels.names.index(name)
        assert len(sample.texts[k]) == len(sample.images[k]) == PER_LABEL
        # every sampled image shows the label: its rows are rows of image_x whose targets have it
        rows = [np.flatnonzero((image_x == row).all(1))[0] for row in sample.images[k]]
        assert image_targets[rows, c].all()

    path = gap_figure(tmp_path / "gap.png", sample, radius=2.0, noise="surface", normalize=False, seed=0, split="test")
    content = figure_content(path)
    assert content["labels"] == frequent and content["texts"] == [PER_LABEL] * MAX_LABELS
    assert content["projection"] == "PCA" and "PCA fitted on every point shown" in content["caption"]
    assert f"{frequent[0]} {PER_LABEL}/{PER_LABEL}" in content["caption"] and "split 'test'" in content["caption"]
    assert 0 < sum(content["explained_variance"]) <= 1


def test_no_shared_label_gives_a_placeholder(tmp_path):
    names = ("a", "b")
    sample = gap_sample(names, np.ones((3, 4)), np.array([[1, 0]] * 3), np.ones((2, 4)), np.array([[0, 1]] * 2), 0)
    path = gap_figure(tmp_path / "gap.png", sample, 1.0, "surface", False, 0, "test")
    assert "no label has both" in figure_content(path)["placeholder"]
