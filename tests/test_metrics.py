import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from pipeline.evaluation.metrics import average_precision, integrate, mean_ap, min_max_scale, per_class_ap


@pytest.mark.parametrize("seed", range(5))
def test_ap_matches_sklearn_on_random_scores_with_ties(seed):
    rng = np.random.default_rng(seed)
    targets = (rng.random((300, 12)) < 0.2).astype(int)
    scores = rng.random((300, 12))
    scores[:, :6] = np.round(scores[:, :6], 1)  # heavy ties in half the classes
    scores[:, 6] = 0.5  # one class where every score ties
    ours = per_class_ap(scores, targets)
    reference = np.array([average_precision_score(targets[:, c], scores[:, c]) for c in range(12)])
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert mean_ap(scores, targets) == pytest.approx(float(reference.mean()), abs=1e-6)


def test_ap_known_values():
    assert average_precision([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0.1, 0.2], [1, 1]) == pytest.approx(1.0)


def test_class_without_positives_is_left_out_of_map():
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    targets = np.array([[1, 0], [0, 0]])
    assert np.isnan(per_class_ap(scores, targets)[1])
    assert mean_ap(scores, targets) == pytest.approx(1.0)


def test_integration_per_class_scales_the_other_method_then_averages_with_the_probabilities():
    probabilities = np.array([[0.2], [0.6], [0.4]])
    other = np.array([[1.0], [0.0], [3.0]])
    # per_class (ours): the adapter's probabilities as they are, the other method's scores scaled to [0, 1]
    np.testing.assert_allclose(
        integrate(probabilities, other, "per_class")[:, 0], [(0.2 + 1 / 3) / 2, (0.6 + 0) / 2, (0.4 + 1) / 2]
    )


def test_integration_both_scaled_scales_each_method_to_unit_range_then_averages():
    a = np.array([[0.0], [10.0], [5.0]])
    b = np.array([[1.0], [0.0], [3.0]])
    scaled = min_max_scale(a)
    assert scaled.min() == 0 and scaled.max() == 1
    np.testing.assert_allclose(integrate(a, b, "both")[:, 0], [(0 + 1 / 3) / 2, (1 + 0) / 2, (0.5 + 1) / 2])
