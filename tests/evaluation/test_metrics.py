"""Metrics against hand-computed values (ties, multi-label, empty classes)."""
import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest

from adafocus_tf.evaluation import metrics


def test_average_precision_without_ties_is_mean_precision_at_positives():
  # Positives at ranks 1 and 3: precisions 1/1 and 2/3.
  ap = metrics.average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
  assert ap == pytest.approx((1 + 2 / 3) / 2)


def test_average_precision_ties_share_one_threshold():
  # Thresholds 0.9 (P 0/1, R 0), 0.5 (P 1/3, R 1/2), 0.1 (P 2/4, R 1):
  # AP = 1/2 * 1/3 + 1/2 * 1/2 = 5/12, whichever tied item comes first.
  want = 0.5 * (1 / 3) + 0.5 * 0.5
  assert metrics.average_precision([0.9, 0.5, 0.5, 0.1],
                                   [0, 1, 0, 1]) == pytest.approx(want)
  assert metrics.average_precision([0.9, 0.5, 0.5, 0.1],
                                   [0, 0, 1, 1]) == pytest.approx(want)
  # All tied: one threshold whose precision is the positive rate.
  assert metrics.average_precision([0.3] * 4,
                                   [0, 1, 0, 0]) == pytest.approx(0.25)


def test_average_precision_does_not_depend_on_input_order():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 4, 50) / 4.0   # many ties
  positives = rng.random(50) < 0.3
  ap = metrics.average_precision(scores, positives)
  for _ in range(5):
    perm = rng.permutation(50)
    assert metrics.average_precision(scores[perm],
                                     positives[perm]) == pytest.approx(ap)


def test_average_precision_of_a_class_without_positives_is_nan():
  assert np.isnan(metrics.average_precision([0.5, 0.2], [0, 0]))
  with pytest.raises(ValueError):
    metrics.average_precision([0.5, 0.2], [0, 1, 1])


SINGLE_PROBS = np.array([[0.6, 0.3, 0.1],
                         [0.2, 0.5, 0.3],
                         [0.5, 0.1, 0.4]])
SINGLE_LABELS = np.array([0, 1, 1])


def test_single_label_map_leaves_out_classes_without_positives():
  # Class 0: its one positive is ranked first, AP 1. Class 1: positives at
  # ranks 1 and 3, AP (1 + 2/3) / 2. Class 2 has no positive: left out.
  ap = metrics.per_class_average_precision(SINGLE_PROBS, SINGLE_LABELS)
  assert ap[0] == pytest.approx(1.0)
  assert ap[1] == pytest.approx(5 / 6)
  assert np.isnan(ap[2])
  assert metrics.mean_average_precision(
      SINGLE_PROBS, SINGLE_LABELS) == pytest.approx((1 + 5 / 6) / 2 * 100)


def test_single_label_topk():
  # Row argmaxes 0, 1, 0 against labels 0, 1, 1.
  assert metrics.topk_accuracy(SINGLE_PROBS, SINGLE_LABELS,
                               1) == pytest.approx(200 / 3)
  # Row 2's top two are classes 0 and 2: still a miss.
  assert metrics.topk_accuracy(SINGLE_PROBS, SINGLE_LABELS,
                               2) == pytest.approx(200 / 3)
  # k beyond the number of classes is clipped: everything is a hit.
  assert metrics.topk_accuracy(SINGLE_PROBS, SINGLE_LABELS, 5) == 100.0


def test_topk_ties_go_to_the_lower_class_index():
  probs = np.array([[0.4, 0.4, 0.2]])
  assert metrics.topk_accuracy(probs, [1], 1) == 0.0
  assert metrics.topk_accuracy(probs, [0], 1) == 100.0
  assert metrics.topk_accuracy(probs, [1], 2) == 100.0


MULTI_PROBS = np.array([[0.7, 0.2, 0.1],
                        [0.1, 0.6, 0.3],
                        [0.3, 0.3, 0.4],
                        [0.2, 0.5, 0.3]])
MULTI_HOT = np.array([[1, 0, 1],
                      [0, 1, 0],
                      [0, 0, 1],
                      [1, 1, 0]])


def test_multi_label_map():
  # Class 0: ranking P N P N -> (1 + 2/3) / 2.
  # Class 1: ranking P P N N -> 1.
  # Class 2: 0.4 (P): P 1, R 1/2; 0.3 (N, N): P 1/3, R 1/2; 0.1 (P): P 2/4,
  #   R 1 -> 1/2 * 1 + 1/2 * 1/2 = 3/4.
  ap = metrics.per_class_average_precision(MULTI_PROBS, MULTI_HOT)
  np.testing.assert_allclose(ap, [5 / 6, 1.0, 0.75])
  assert metrics.mean_average_precision(
      MULTI_PROBS, MULTI_HOT) == pytest.approx((5 / 6 + 1 + 0.75) / 3 * 100)
  # Booleans work as well as 0/1.
  assert metrics.mean_average_precision(
      MULTI_PROBS, MULTI_HOT.astype(bool)) == pytest.approx(
          (5 / 6 + 1 + 0.75) / 3 * 100)


def test_multi_label_topk_hits_on_any_positive():
  # Top-1 classes 0, 1, 2, 1: all among their videos' labels.
  assert metrics.topk_accuracy(MULTI_PROBS, MULTI_HOT, 1) == 100.0
  # Video 3 labelled only with class 2 now: its top 1 (class 1) misses, its
  # top 2 (classes 1, 2) hits.
  labels = MULTI_HOT.copy()
  labels[3] = [0, 0, 1]
  assert metrics.topk_accuracy(MULTI_PROBS, labels, 1) == 75.0
  assert metrics.topk_accuracy(MULTI_PROBS, labels, 2) == 100.0


def test_map_per_step_and_summarize():
  step_probs = np.stack([np.full_like(SINGLE_PROBS, 1 / 3), SINGLE_PROBS],
                        axis=1)   # [N, T=2, C]
  per_step = metrics.map_per_step(step_probs, SINGLE_LABELS)
  # Step 0: every score tied. Class 0: P = 1/3 at R = 1; class 1: 2/3.
  np.testing.assert_allclose(per_step, [(1 / 3 + 2 / 3) / 2 * 100,
                                        (1 + 5 / 6) / 2 * 100])
  row = metrics.summarize(SINGLE_PROBS, step_probs, SINGLE_LABELS)
  assert set(row) == {"top1", "top5", "mAP", "mAP_per_step"}
  assert row["top1"] == pytest.approx(200 / 3)
  assert row["top5"] == 100.0
  assert row["mAP"] == pytest.approx((1 + 5 / 6) / 2 * 100)
  assert isinstance(row["mAP_per_step"], list)
  np.testing.assert_allclose(row["mAP_per_step"], per_step)


def test_bad_labels_are_rejected():
  with pytest.raises(ValueError):
    metrics.mean_average_precision(SINGLE_PROBS, [0, 1, 3])
  with pytest.raises(ValueError):
    metrics.mean_average_precision(SINGLE_PROBS, np.zeros((3, 4)))
  with pytest.raises(ValueError):
    metrics.topk_accuracy(SINGLE_PROBS, [0, 1], 1)
