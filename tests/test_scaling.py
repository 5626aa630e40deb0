"""The scaling benchmark's measurements, at a tiny size: the prompt methods' (CoOp, TaI-DPT) FLOPs grow
with the label count, the adapter's only by its last layer, and the CSV has the documented columns. No timings."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scaling():
    spec = importlib.util.spec_from_file_location("scaling_benchmark", ROOT / "benchmarks" / "scaling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method", ["coop", "dualcoop", "taidpt"])
def test_prompt_method_flops_grow_with_labels_and_meta_count_matches_a_real_step(
    scaling, tiny_clip, one_thread, method
):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    small, large = (scaling.count_flops(method, n, str(tiny_clip)) for n in (3, 6))
    # every label is one more prompt (DualCoOp, TaI-DPT: two) through the text encoder: twice the labels, about twice the work
    assert 1.9 * small < large < 2.1 * small
    # the meta-device count equals a real step's (with attention as plain matrix products, which the
    # counter sees; the fused CPU attention kernel would hide them)
    training = scaling.PeerTraining(method, 3, str(tiny_clip), "cpu")
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        training.step()
    assert counter.get_total_flops() == small


def test_taidpt_costs_about_two_coops(scaling, tiny_clip, one_thread):
    """Two contexts, each sent with every label: about twice CoOp's step, and twice its parameters
    (DualCoOp's are per label, its default)."""
    coop, taidpt = (scaling.count_flops(m, 6, str(tiny_clip)) for m in ("coop", "taidpt"))
    assert 1.8 * coop < taidpt < 2.4 * coop
    trainable = {m: scaling.PeerTraining(m, 6, str(tiny_clip), "cpu").trainable_params for m in scaling.PEERS}
    assert trainable == {"coop": 16 * 64, "taidpt": 2 * 16 * 64, "dualcoop": 2 * 6 * 16 * 64}  # DualCoOp: per label


def test_adapter_flops_and_parameters_grow_only_by_the_last_layer(scaling, tiny_clip, one_thread):
    d, h, b = 64, 32, scaling.BATCH  # the tiny CLIP's embedding, a small hidden layer, the batch
    for n in (3, 6):
        flops = scaling.count_flops("adapter", n, str(tiny_clip), hidden_dim=h)
        # forward 2b(dh + hh + hn); backward: weight gradients of all three layers, input gradients of the last two
        assert flops == 2 * b * (2 * d * h + 3 * h * h + 3 * h * n)
        result = scaling.measure("adapter", n, 1, str(tiny_clip), "cpu", hidden_dim=h)
        assert result["trainable_params"] == (d + 1) * h + (h + 1) * h + (h + 1) * n


def test_csv_has_the_documented_columns_and_marks_extrapolated_rows(scaling, tiny_clip, one_thread, tmp_path):
    rows = scaling.run(
        [3, 6],
        prompt_max_labels=3,
        adapter_steps=1,
        prompt_steps=1,
        source=str(tiny_clip),
        device="cpu",
        hidden_dim=32,
        fresh_process=False,
        log=lambda _: None,
    )
    scaling.write_csv(rows, tmp_path / "scaling.csv")
    scaling.plot(rows, tmp_path / "scaling.png", "tiny")
    with (tmp_path / "scaling.csv").open() as f:
        table = list(csv.DictReader(f))
    assert (
        list(table[0])
        == scaling.COLUMNS
        == [
            "method",
            "labels",
            "trainable_params",
            "gflops_per_batch",
            "step_ms",
            "cpu_ms",
            "peak_memory_mib",
            "source",
            "steps_timed",
        ]
    )
    sources = {(r["method"], int(r["labels"])): r["source"] for r in table}
    assert sources == {
        ("adapter", 3): "measured",
        ("adapter", 6): "measured",
        ("coop", 3): "measured",
        ("coop", 6): "extrapolated",
        ("dualcoop", 3): "measured",
        ("dualcoop", 6): "extrapolated",
        ("taidpt", 3): "measured",
        ("taidpt", 6): "extrapolated",
    }
    coop = {int(r["labels"]): r for r in table if r["method"] == "coop"}
    assert coop[6]["steps_timed"] == "0" and float(coop[6]["step_ms"]) == pytest.approx(
        2 * float(coop[3]["step_ms"]), rel=1e-3
    )
    assert (tmp_path / "scaling.png").stat().st_size > 0
